/**
 * Prepared statements, cached per connection and SQL text: preparing compiles the SQL, which on
 * the call path cost more than running it (a governed call runs a dozen statements). better-sqlite3
 * statements stay valid for the connection's life; none of ours changes a statement's mode
 * (pluck/raw/expand), so sharing one per text is safe.
 */
import type Database from 'better-sqlite3';

const CACHES = new WeakMap<Database.Database, Map<string, Database.Statement>>();

export function prepared(db: Database.Database, sql: string): Database.Statement {
  let cache = CACHES.get(db);
  if (!cache) {
    cache = new Map();
    CACHES.set(db, cache);
  }
  let s = cache.get(sql);
  if (!s) {
    s = db.prepare(sql);
    cache.set(sql, s);
  }
  return s;
}
