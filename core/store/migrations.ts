/**
 * Numbered schema migrations. Append only: a released migration is never edited.
 * `PRAGMA user_version` records the last applied number.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tokens, devices, audit',
    sql: `
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL DEFAULT '',
        scopes TEXT NOT NULL,
        roles TEXT NOT NULL,
        kdf TEXT NOT NULL,
        salt BLOB NOT NULL,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT,
        expires_at INTEGER,
        revoked_at INTEGER,
        last_used_at INTEGER
      ) STRICT;

      CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        pubkey TEXT NOT NULL,
        role TEXT NOT NULL,
        label TEXT,
        platform TEXT,
        version TEXT,
        first_seen_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE audit_entries (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      ) STRICT;
      CREATE INDEX audit_entries_type_seq ON audit_entries (type, seq);
    `,
  },
];
