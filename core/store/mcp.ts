/**
 * MCP persistence (migration 5): declared servers with their approval state, and per tool the
 * definition last observed next to the one an operator approved. Rows only: hashing, screening
 * and what is served belong to core/mcp.
 */
import { prepared, type SqlDb } from './statements.js';

export type McpServerState = 'quarantined' | 'approved' | 'disabled';

export interface McpServerRow {
  name: string;
  /** 'operator', or 'plugin:<id>' for a server an enabled plugin declares. */
  origin: string;
  description: string;
  /** Canonical JSON of the McpServerSpec. */
  spec: string;
  spec_digest: string;
  state: McpServerState;
  created_at: number;
  updated_at: number;
  approved_at: number | null;
  approved_by: string | null;
  /** JSON health note: { status, error, at, ... }. */
  health: string | null;
}

export interface McpToolRow {
  server: string;
  name: string;
  /** Canonical JSON of the definition the server last listed; null once it stopped listing it. */
  observed: string | null;
  observed_hash: string | null;
  observed_at: number | null;
  /** Why the observed definition was refused at registration (hostile schema), else null. */
  refused: string | null;
  approved: string | null;
  approved_hash: string | null;
  effect: 'read_only' | 'state_changing';
  approved_at: number | null;
  approved_by: string | null;
}

export class McpRepo {
  constructor(private readonly db: SqlDb) {}

  getServer(name: string): McpServerRow | undefined {
    return prepared(this.db, 'SELECT * FROM mcp_servers WHERE name = ?').get(name) as McpServerRow | undefined;
  }

  listServers(): McpServerRow[] {
    return prepared(this.db, 'SELECT * FROM mcp_servers ORDER BY name').all() as McpServerRow[];
  }

  insertServer(r: Omit<McpServerRow, 'approved_at' | 'approved_by' | 'health'>): void {
    prepared(this.db, 'INSERT INTO mcp_servers (name, origin, description, spec, spec_digest, state, created_at, updated_at) VALUES (@name, @origin, @description, @spec, @spec_digest, @state, @created_at, @updated_at)')
      .run(r);
  }

  /** Replaces a server's spec (a plugin upgrade): back to quarantine, approvals of its tools kept for the diff. */
  replaceSpec(name: string, spec: string, digest: string, description: string, at: number): void {
    prepared(this.db, "UPDATE mcp_servers SET spec = ?, spec_digest = ?, description = ?, state = 'quarantined', approved_at = NULL, approved_by = NULL, updated_at = ? WHERE name = ?").run(spec, digest, description, at, name);
  }

  setState(name: string, state: McpServerState, at: number, by: string | null): boolean {
    const approved = state === 'approved';
    return (
      prepared(this.db, 'UPDATE mcp_servers SET state = ?, updated_at = ?, approved_at = CASE WHEN ? THEN ? ELSE approved_at END, approved_by = CASE WHEN ? THEN ? ELSE approved_by END WHERE name = ?')
        .run(state, at, approved ? 1 : 0, at, approved ? 1 : 0, by, name).changes > 0
    );
  }

  setHealth(name: string, health: string): void {
    prepared(this.db, 'UPDATE mcp_servers SET health = ? WHERE name = ?').run(health, name);
  }

  removeServer(name: string): boolean {
    return prepared(this.db, 'DELETE FROM mcp_servers WHERE name = ?').run(name).changes > 0;
  }

  tools(server: string): McpToolRow[] {
    return prepared(this.db, 'SELECT * FROM mcp_tools WHERE server = ? ORDER BY name').all(server) as McpToolRow[];
  }

  allTools(): McpToolRow[] {
    return prepared(this.db, 'SELECT * FROM mcp_tools ORDER BY server, name').all() as McpToolRow[];
  }

  /** Records what the server listed now; a tool it no longer lists keeps its approval with observed = null. */
  observe(server: string, seen: ReadonlyArray<{ name: string; observed: string; observed_hash: string; refused: string | null }>, at: number): void {
    const upsert = prepared(this.db, 
      `INSERT INTO mcp_tools (server, name, observed, observed_hash, observed_at, refused) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (server, name) DO UPDATE SET observed = excluded.observed, observed_hash = excluded.observed_hash, observed_at = excluded.observed_at, refused = excluded.refused`,
    );
    for (const t of seen) upsert.run(server, t.name, t.observed, t.observed_hash, at, t.refused);
    const names = seen.map((t) => t.name);
    const gone = prepared(this.db, {
      sqlite: 'UPDATE mcp_tools SET observed = NULL, observed_hash = NULL, refused = NULL, observed_at = ? WHERE server = ? AND observed IS NOT NULL AND name NOT IN (SELECT value FROM json_each(?))',
      postgres: 'UPDATE mcp_tools SET observed = NULL, observed_hash = NULL, refused = NULL, observed_at = ? WHERE server = ? AND observed IS NOT NULL AND name NOT IN (SELECT value FROM json_array_elements_text(CAST(? AS json)))',
    });
    gone.run(at, server, JSON.stringify(names));
    // A tool never approved and no longer listed is just forgotten.
    prepared(this.db, 'DELETE FROM mcp_tools WHERE server = ? AND observed IS NULL AND approved IS NULL').run(server);
  }

  /** Pins the observed definition of one tool as approved. */
  approveTool(server: string, name: string, effect: 'read_only' | 'state_changing', at: number, by: string): boolean {
    return (
      prepared(this.db, 'UPDATE mcp_tools SET approved = observed, approved_hash = observed_hash, effect = ?, approved_at = ?, approved_by = ? WHERE server = ? AND name = ? AND observed IS NOT NULL AND refused IS NULL')
        .run(effect, at, by, server, name).changes > 0
    );
  }
}
