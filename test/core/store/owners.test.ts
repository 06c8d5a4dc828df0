// Run → tenant and token → tenant lookups (core/store/owners.ts): cached once the row is seen to
// exist, never while it is missing (it may be committed later, on this or another connection).
import t, { type Test } from 'tap';
import type { RunRow } from '../../../core/store/index.js';
import type { SqlDb, SqlStatement } from '../../../core/store/statements.js';
import { OwnerLookup, RUN_OWNER_SQL } from '../../../core/store/owners.js';
import { forEachBackend } from '../../helpers/store-backends.js';

function run(id: string): RunRow {
  return {
    id, kind: 'tool', state: 'queued', created_by: 'tok_a', idempotency_key: null, request_hash: 'h', created_at: 1, updated_at: 1, finished_at: null,
    cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: null, error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0,
  };
}

/** A SqlDb answering the owner query from `rows` (id → tenant_id, null: default), counting queries. */
function fakeDb(rows: Map<string, string | null>): { db: SqlDb; queries: () => number } {
  let n = 0;
  const stmt: SqlStatement = {
    get: (id: unknown) => {
      n += 1;
      return rows.has(id as string) ? { tenant_id: rows.get(id as string) } : undefined;
    },
    run: () => ({ changes: 0, lastInsertRowid: 0 }),
    all: () => [],
    iterate: function* () {},
  } as unknown as SqlStatement;
  return { db: { dialect: 'sqlite', prepare: () => stmt }, queries: () => n };
}

t.test('a missing row is asked about again; an existing one is cached, default included; learn() primes', async (t) => {
  const rows = new Map<string, string | null>();
  const { db, queries } = fakeDb(rows);
  const owners = new OwnerLookup(db, RUN_OWNER_SQL);
  t.equal(owners.of('run_1'), undefined, 'no row: unknown');
  rows.set('run_1', 'acme');
  t.equal(owners.of('run_1'), 'acme', 'committed meanwhile (elsewhere): seen, not a cached miss');
  t.equal(owners.of('run_1'), 'acme');
  t.equal(queries(), 2, 'the second answer came from the cache');
  rows.set('run_2', null);
  t.equal(owners.of('run_2'), 'default', 'no ownership row: the default tenant');
  t.equal(owners.of('run_2'), 'default');
  t.equal(queries(), 3);
  owners.learn('run_3', 'beta');
  t.equal(owners.of('run_3'), 'beta', 'learned at insert: no query');
  t.equal(queries(), 3);
});

forEachBackend(t, 'runTenant and the outbox tenant of a run event come from the run and its ownership row', async (t: Test, { repos: s, tx }) => {
  tx(() => s.tenants.insert({ id: 'acme', label: 'Acme', created_at: 1 }));
  t.equal(s.execution.runTenant('run_x'), 'default', 'an unknown run answers default (callers check existence)');
  t.equal(s.outbox.tenantOf({ run_id: 'run_x', created_by: 'tok_x' }), 'default');
  tx(() => s.execution.insertRun(run('run_x'), 'acme'));
  t.equal(s.execution.runTenant('run_x'), 'acme', 'the miss was not cached');
  t.equal(s.outbox.tenantOf({ run_id: 'run_x' }), 'acme');
  tx(() => s.execution.insertRun(run('run_h')));
  t.equal(s.execution.runTenant('run_h'), 'default');
  t.equal(s.outbox.tenantOf({ run_id: 'run_h', conversation_id: 'conv_none' }), 'default', "an existing run decides the event's tenant");
});
