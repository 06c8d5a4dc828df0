/**
 * Which tenant owns a run or a token, cached per repository. Ownership is fixed when the row is
 * written: a run's or token's ownership row (`tenant_runs`, `tenant_tokens`, migration 19) is
 * inserted in the same statement group as the row itself and never updated, and no ownership
 * row means the `default` tenant. So once the row is seen to exist, its tenant is cached for
 * good; a row not (yet) seen is looked up every time (a lookup that finds no row is never
 * cached: the row may be committed later, on this or another replica). Ids are random and never
 * reused, so an entry left behind by a rolled-back insert or a deleted row (retention) names an
 * id nothing will ask about again.
 *
 * On PostgreSQL each lookup is a round trip the event loop waits for; a governed call asked
 * about its run and its caller's token about ten times (docs/dev/postgres-port.md).
 */
import { DEFAULT_TENANT } from '../../schemas/src/operations.js';
import { prepared, type SqlDb } from './statements.js';

/** Entries kept before the cache starts over (a bound on memory, not a tuning knob). */
const MAX_ENTRIES = 50_000;

export const RUN_OWNER_SQL = 'SELECT t.tenant_id FROM runs r LEFT JOIN tenant_runs t ON t.run_id = r.id WHERE r.id = ?';
export const TOKEN_OWNER_SQL = 'SELECT t.tenant_id FROM tokens k LEFT JOIN tenant_tokens t ON t.token_id = k.id WHERE k.id = ?';

export class OwnerLookup {
  private readonly known = new Map<string, string>();

  constructor(
    private readonly db: SqlDb,
    /** One `?` parameter (the id); one row with `tenant_id` (NULL: default) if the row exists. */
    private readonly sql: string,
  ) {}

  /** The row with `id` was just inserted for `tenant` (in the statement group writing its ownership). */
  learn(id: string, tenant: string): void {
    if (this.known.size >= MAX_ENTRIES) this.known.clear();
    this.known.set(id, tenant);
  }

  /** The owning tenant of the row with `id`, or undefined when there is no such row. */
  of(id: string): string | undefined {
    const hit = this.known.get(id);
    if (hit !== undefined) return hit;
    const row = prepared(this.db, this.sql).get(id) as { tenant_id: string | null } | undefined;
    if (row === undefined) return undefined;
    const tenant = row.tenant_id ?? DEFAULT_TENANT;
    this.learn(id, tenant);
    return tenant;
  }
}
