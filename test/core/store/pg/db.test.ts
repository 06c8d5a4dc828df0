import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS } from '../../../../core/store/migrations.js';
import { PG_MIGRATIONS } from '../../../../core/store/pg/migrations.js';
import { assertPgSettings, migratePg, openPgDb, pgSchemaVersion, translate } from '../../../../core/store/pg/db.js';
import { prepared } from '../../../../core/store/statements.js';
import { sharedPostgres, skipWithoutPostgres, startPostgres } from '../../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
const LATEST = MIGRATIONS[MIGRATIONS.length - 1]!.version;

t.test('parameters become $n: positional in order, a repeated @name one number', async (t) => {
  t.same(translate('SELECT * FROM t WHERE a = ? AND b = ?'), { text: 'SELECT * FROM t WHERE a = $1 AND b = $2', names: null, count: 2 });
  t.same(translate('UPDATE t SET a = @a WHERE b <= @now OR c <= @now'), { text: 'UPDATE t SET a = $1 WHERE b <= $2 OR c <= $2', names: ['a', 'now'], count: 0 });
  t.equal(translate("SELECT '?', \"a?\" FROM t WHERE x = ? -- why?\n").text, "SELECT '?', \"a?\" FROM t WHERE x = $1 \n", 'not inside strings, identifiers or comments');
  t.throws(() => translate('SELECT ? , @a'), { code: 'TYRUM_ERR_INTERNAL', message: /both \? and @name/ });
  t.throws(() => translate('SELECT $1'), { code: 'TYRUM_ERR_INTERNAL', message: /\$n parameters/ });
});

t.test('SQL PostgreSQL cannot run is refused with the construct named, not mistranslated', async (t) => {
  for (const [sql, what] of [
    ['SELECT value FROM json_each(?)', /json_\* functions/],
    ['INSERT OR IGNORE INTO t VALUES (?)', /INSERT OR/],
    ['PRAGMA user_version', /PRAGMA/],
    ['SELECT LENGTH(CAST(k AS BLOB)) FROM t', /AS BLOB/],
    ["SELECT 1 FROM t WHERE id GLOB 'a*'", /GLOB/],
    ['SELECT last_insert_rowid()', /last_insert_rowid/],
    ['SELECT IFNULL(a, 0) FROM t', /SQLite-only function/],
    ['BEGIN IMMEDIATE', /BEGIN IMMEDIATE/],
  ] as const) {
    t.throws(() => translate(sql), { code: 'TYRUM_ERR_INTERNAL', message: what }, sql);
  }
  t.doesNotThrow(() => translate("SELECT 'json_each(x) PRAGMA' AS s"), 'inside a string literal it is text');
});

t.test('the PostgreSQL migrations are the SQLite ones, version for version', async (t) => {
  t.same(PG_MIGRATIONS.map((m) => [m.version, m.name]), MIGRATIONS.map((m) => [m.version, m.name]));
  // 1, 2, ... with no gap: the runner applies only versions above the current one, so a version
  // merged below one already applied would never run on that database.
  t.same(MIGRATIONS.map((m) => m.version), MIGRATIONS.map((_, i) => i + 1), 'versions are contiguous from 1');
});

t.test('durability settings are checked: synchronous_commit and fsync must be on', async (t) => {
  t.doesNotThrow(() => assertPgSettings({ synchronous_commit: 'on', fsync: 'on', full_page_writes: 'on' }));
  t.doesNotThrow(() => assertPgSettings({ synchronous_commit: 'remote_apply', fsync: 'on', full_page_writes: 'on' }));
  t.throws(() => assertPgSettings({ synchronous_commit: 'off', fsync: 'on', full_page_writes: 'on' }), { code: 'TYRUM_ERR_STORE_PRAGMA', message: /synchronous_commit=off/ });
  t.throws(() => assertPgSettings({ synchronous_commit: 'on', fsync: 'off', full_page_writes: 'on' }), { code: 'TYRUM_ERR_STORE_PRAGMA', message: /fsync=off/ });
  t.throws(() => assertPgSettings({ synchronous_commit: 'on', fsync: 'on', full_page_writes: 'off' }), { code: 'TYRUM_ERR_STORE_PRAGMA', message: /full_page_writes=off/ });
});

t.test('a server that acknowledges commits before they are durable is refused at open', { skip }, async (t) => {
  const c = await startPostgres({ synchronous_commit: 'off', fsync: 'off' });
  t.teardown(() => c.destroy());
  t.throws(() => openPgDb(c.database()), { code: 'TYRUM_ERR_STORE_PRAGMA', message: /synchronous_commit=off.*fsync=off/ });
});

t.test('open migrates to the latest version once; reopening applies nothing', { skip }, async (t) => {
  const url = (await cluster()).database();
  const db = openPgDb(url);
  t.teardown(() => db.close());
  t.equal(pgSchemaVersion(db), LATEST);
  const again = openPgDb(url);
  t.equal(pgSchemaVersion(again), LATEST);
  await again.close();
  t.same(db.exec('SELECT count(*) AS n, count(DISTINCT version) AS d FROM tyrum_schema_version').rows, [{ n: PG_MIGRATIONS.length, d: PG_MIGRATIONS.length }]);
});

t.test('a database from a newer build is refused; a failed migration leaves the version untouched', { skip }, async (t) => {
  const url = (await cluster()).database();
  const db = openPgDb(url);
  t.teardown(() => db.close());
  t.throws(() => migratePg(db, [...PG_MIGRATIONS, { version: 99, name: 'broken', sql: 'CREATE TABLE x (; nonsense' }]), { code: 'TYRUM_ERR_STORE_MIGRATION', message: /migration 99 \(broken\)/ });
  t.equal(pgSchemaVersion(db), LATEST);
  db.exec("INSERT INTO tyrum_schema_version (version, name, applied_at) VALUES (999, 'future', 0)");
  t.throws(() => openPgDb(url), { code: 'TYRUM_ERR_STORE_MIGRATION', message: /newer than this build/ });
});

t.test('two processes opening a new database at once migrate it once (advisory lock)', { skip }, async (t) => {
  const url = (await cluster()).database();
  const fixture = fileURLToPath(new URL('./fixtures/open.ts', import.meta.url));
  const runOne = () =>
    new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', fixture, url], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (code) => resolve({ code, err }));
    });
  const results = await Promise.all([runOne(), runOne(), runOne()]);
  t.same(results.map((r) => r.code), [0, 0, 0], results.map((r) => r.err).join('\n'));
  const db = openPgDb(url, { readonly: true });
  t.teardown(() => db.close());
  t.same(db.exec('SELECT count(*) AS n FROM tyrum_schema_version').rows, [{ n: PG_MIGRATIONS.length }]);
});

t.test('every text column compares by bytes (COLLATE "C"), whatever the database default', { skip }, async (t) => {
  const db = openPgDb((await cluster()).database());
  t.teardown(() => db.close());
  t.same(db.exec("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND data_type = 'text' AND collation_name IS DISTINCT FROM 'C'").rows, []);
  t.ok(db.exec("SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = current_schema() AND data_type = 'text'").rows[0]!.n as number > 100);
});

t.test("rows read like SQLite's: no rowid in SELECT *, booleans as 0/1, no lastInsertRowid", { skip }, async (t) => {
  const db = openPgDb((await cluster()).database());
  t.teardown(() => db.close());
  prepared(db, "INSERT INTO devices (device_id, pubkey, role, first_seen_at, last_seen_at) VALUES ('d1', 'pk', 'client', 1, 2)").run();
  t.same(prepared(db, 'SELECT * FROM devices').all(), [{ device_id: 'd1', pubkey: 'pk', role: 'client', label: null, platform: null, version: null, first_seen_at: 1, last_seen_at: 2 }]);
  t.same(prepared(db, 'SELECT rowid AS rid, EXISTS (SELECT 1 FROM devices) AS present, 1 > 2 AS absurd FROM devices').get(), { rid: 1, present: 1, absurd: 0 });
  const r = prepared(db, "UPDATE devices SET label = 'x' WHERE device_id = ?").run('d1');
  t.equal(r.changes, 1);
  t.throws(() => r.lastInsertRowid, { code: 'TYRUM_ERR_INTERNAL', message: /RETURNING/ });
  t.throws(() => prepared(db, 'SELECT * FROM devices WHERE device_id = ?').get(), { code: 'TYRUM_ERR_INTERNAL', message: /expected 1 SQL parameters, got 0/ });
  t.throws(() => prepared(db, 'SELECT * FROM devices WHERE device_id = @id').get({}), { code: 'TYRUM_ERR_INTERNAL', message: /missing named SQL parameter @id/ });
});
