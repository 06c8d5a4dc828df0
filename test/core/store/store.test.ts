import t from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { openStore, assertPragmas } from '../../../core/store/index.js';
import { MIGRATIONS } from '../../../core/store/migrations.js';

t.test('a new store runs with WAL, synchronous=FULL and foreign keys (A4)', async (t) => {
  const dir = t.testdir();
  const s = openStore(join(dir, 'a.db'));
  t.same(s.pragmas(), { journal_mode: 'wal', synchronous: 2, foreign_keys: 1 });
  t.equal(s.schemaVersion(), MIGRATIONS[MIGRATIONS.length - 1]!.version);
  t.equal(s.integrityCheck(), 'ok');
  s.close();
});

t.test('the store refuses to run when a required pragma is not in effect (A4)', async (t) => {
  for (const bad of [
    { journal_mode: 'delete', synchronous: 2, foreign_keys: 1 },
    { journal_mode: 'wal', synchronous: 1, foreign_keys: 1 },
    { journal_mode: 'wal', synchronous: 2, foreign_keys: 0 },
    { journal_mode: 'memory', synchronous: 0, foreign_keys: 0 },
  ]) {
    t.throws(() => assertPragmas(bad), { code: 'TYRUM_ERR_STORE_PRAGMA' }, JSON.stringify(bad));
  }
  // A database that cannot do WAL (in-memory) is refused at open.
  t.throws(() => openStore(':memory:'), { code: 'TYRUM_ERR_STORE_PRAGMA', message: /journal_mode=memory/ });
});

t.test('migrations are applied once and a database from a newer build is refused', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'b.db');
  openStore(path).close();
  const again = openStore(path);
  t.equal(again.schemaVersion(), MIGRATIONS[MIGRATIONS.length - 1]!.version, 'reopening does not re-run migrations');
  again.close();
  const raw = new Database(path);
  raw.pragma('user_version = 999');
  raw.close();
  t.throws(() => openStore(path), { code: 'TYRUM_ERR_STORE_MIGRATION', message: /newer than this build/ });
});

t.test('a failed migration leaves the schema version untouched', async (t) => {
  const dir = t.testdir();
  const s = openStore(join(dir, 'c.db'));
  t.throws(() => s.migrate([...MIGRATIONS, { version: 99, name: 'broken', sql: 'CREATE TABLE x (; nonsense' }]), { code: 'TYRUM_ERR_STORE_MIGRATION', message: /migration 99 \(broken\)/ });
  t.equal(s.schemaVersion(), MIGRATIONS[MIGRATIONS.length - 1]!.version);
  s.close();
});

t.test('data_version changes when another connection commits', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'd.db');
  const a = openStore(path);
  const b = openStore(path);
  const before = a.dataVersion();
  b.tx(() => b.devices.upsert({ device_id: 'dev_x', pubkey: 'p', role: 'client', label: null, platform: null, version: null }, 1));
  t.not(a.dataVersion(), before);
  t.equal(a.devices.get('dev_x')?.role, 'client');
  a.close();
  b.close();
});
