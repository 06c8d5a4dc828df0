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
  {
    version: 2,
    name: 'plugins, grants, config, plugin kv, secrets',
    sql: `
      CREATE TABLE plugins (
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        manifest TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        wasm_sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('disabled', 'enabled')),
        installed_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE plugin_grants (
        plugin_id TEXT PRIMARY KEY REFERENCES plugins (id) ON DELETE CASCADE,
        grant_json TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE plugin_config (
        plugin_id TEXT PRIMARY KEY REFERENCES plugins (id) ON DELETE CASCADE,
        config_json TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE plugin_kv (
        plugin_id TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (plugin_id, key)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        tag BLOB NOT NULL,
        destinations TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        rotated_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
];
