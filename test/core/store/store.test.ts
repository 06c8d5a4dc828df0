import t from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { openStore, assertPragmas } from '../../../core/store/index.js';
import { MIGRATIONS } from '../../../core/store/migrations.js';

t.test('a new store runs with WAL, every commit synced, and foreign keys (A4)', async (t) => {
  const dir = t.testdir();
  const s = openStore(join(dir, 'a.db'));
  t.same(s.pragmas(), { journal_mode: 'wal', synchronous: 1, foreign_keys: 1, commit_sync: 'store' }, 'NORMAL, with the store fdatasyncing the log before any commit is reported');
  t.equal(s.schemaVersion(), MIGRATIONS[MIGRATIONS.length - 1]!.version);
  t.equal(s.integrityCheck(), 'ok');
  s.close();
});

t.test('the database and its WAL and shared-memory files are created 0600, whatever the umask', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'modes.db');
  const saved = process.umask(0o022);
  t.teardown(() => void process.umask(saved));
  const modes = () => Object.fromEntries(['', '-wal', '-shm'].map((suffix) => [suffix || 'db', existsSync(path + suffix) ? statSync(path + suffix).mode & 0o777 : 'missing']));

  const s = openStore(path);
  t.same(modes(), { db: 0o600, '-wal': 0o600, '-shm': 0o600 }, 'after open');
  for (let i = 0; i < 50; i++) s.tx(() => s.audit.insert({ seq: i + 1, ts: 'x', type: 'test.event', actor: '{}', data: '{}', prev_hash: 'p', hash: `h${i}` }));
  t.same(modes(), { db: 0o600, '-wal': 0o600, '-shm': 0o600 }, 'after writes');
  s.close();

  // A database left group- and world-readable by an older build is tightened when opened.
  const old = join(dir, 'old.db');
  const raw = new Database(old);
  raw.pragma('journal_mode = WAL');
  raw.close();
  chmodSync(old, 0o644);
  const again = openStore(old);
  t.equal(statSync(old).mode & 0o777, 0o600);
  t.equal(statSync(old + '-shm').mode & 0o777, 0o600);
  again.close();
});

t.test('the store refuses to run when a required pragma is not in effect (A4)', async (t) => {
  for (const bad of [
    { journal_mode: 'delete', synchronous: 2, foreign_keys: 1, commit_sync: 'sqlite' },
    { journal_mode: 'wal', synchronous: 1, foreign_keys: 1, commit_sync: 'sqlite' },
    { journal_mode: 'wal', synchronous: 0, foreign_keys: 1, commit_sync: 'store' },
    { journal_mode: 'wal', synchronous: 2, foreign_keys: 0, commit_sync: 'sqlite' },
    { journal_mode: 'memory', synchronous: 0, foreign_keys: 0, commit_sync: 'sqlite' },
  ] as const) {
    t.throws(() => assertPragmas(bad), { code: 'TYRUM_ERR_STORE_PRAGMA' }, JSON.stringify(bad));
  }
  t.doesNotThrow(() => assertPragmas({ journal_mode: 'wal', synchronous: 2, foreign_keys: 1, commit_sync: 'sqlite' }), 'FULL: SQLite syncs in COMMIT');
  t.doesNotThrow(() => assertPragmas({ journal_mode: 'wal', synchronous: 1, foreign_keys: 1, commit_sync: 'store' }), 'NORMAL with the store syncing each commit');
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
