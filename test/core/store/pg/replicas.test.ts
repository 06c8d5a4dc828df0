// Store pieces several replicas on one PostgreSQL rely on: a run (or schedule) another replica's
// open transaction holds is skipped by a claim, not waited for (FOR UPDATE SKIP LOCKED), and the
// outbox notification wakes listeners when an append commits, never for one rolled back.
import t, { type Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { openPgStore, type RunRow, type Store } from '../../../../core/store/index.js';
import { PgBridge, type PgListenEvent } from '../../../../core/store/pg/bridge.js';
import { sharedPostgres, skipWithoutPostgres } from '../../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);

function run(id: string): RunRow {
  return {
    id, kind: 'tool', state: 'queued', created_by: 'u', idempotency_key: null, request_hash: 'h', created_at: 1, updated_at: 1, finished_at: null,
    cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: null, error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0,
  };
}

async function open(t: Test): Promise<{ url: string; s: Store; other: PgBridge }> {
  const url = (await cluster()).database();
  // A short statement timeout: a claim that waited on the row lock would fail, not hang.
  const s = openPgStore(url, { timeoutMs: 3_000 });
  const other = new PgBridge(url);
  t.teardown(async () => {
    s.close();
    await s.whenClosed();
    await other.close();
  });
  return { url, s, other };
}

t.test('a claim skips a run whose row another transaction holds, and takes it once released', { skip }, async (t) => {
  const { s, other } = await open(t);
  await s.commit(() => s.execution.insertRun(run('r1')));
  // Another replica's open transaction holds the row (claiming or writing it).
  other.query('BEGIN');
  other.query("SELECT id FROM runs WHERE id = 'r1' FOR UPDATE");
  const skipped = s.tx(() => s.execution.claim('r1', 'me', Date.now(), 10_000));
  t.equal(skipped, undefined, 'not claimable while held: skipped, not waited for');
  other.query('ROLLBACK');
  const claimed = s.tx(() => s.execution.claim('r1', 'me', Date.now(), 10_000));
  t.match(claimed, { id: 'r1', lease_owner: 'me', fencing_token: 1 }, 'claimed once released');
  t.equal(s.tx(() => s.execution.claim('r1', 'other', Date.now(), 10_000)), undefined, 'a held lease is not claimable');
});

t.test('a schedule advance skips a row another transaction holds', { skip }, async (t) => {
  const { s, other } = await open(t);
  const now = Date.now();
  other.query(
    `INSERT INTO schedules (id, name, kind, timezone, every_ms, anchor_at, target, missed_policy, state, next_fire_at, created_by, created_at, updated_at)
     VALUES ('sch_1', 'n', 'interval', 'UTC', 1000, 0, '{}', 'skip', 'active', $1, 'u', 1, 1)`,
    [now - 1],
  );
  other.query('BEGIN');
  other.query("SELECT id FROM schedules WHERE id = 'sch_1' FOR UPDATE");
  t.equal(s.tx(() => s.schedules.advance('sch_1', now - 1, now + 1000, true, 0, now)), false, 'held by another claimer: skipped');
  other.query('ROLLBACK');
  t.equal(s.tx(() => s.schedules.advance('sch_1', now - 1, now + 1000, true, 0, now)), true, 'advanced once released');
  t.equal(s.tx(() => s.schedules.advance('sch_1', now - 1, now + 2000, true, 0, now)), false, 'a tick is claimed once');
});

t.test('the outbox notification arrives when a transaction commits; a lost listener reconnects', { skip }, async (t) => {
  const { s, other } = await open(t);
  const seen: PgListenEvent[] = [];
  const listener = s.listenOutbox((e) => seen.push(e), 50)!;
  t.teardown(() => listener.close());
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 15_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (seen: ${seen.join(',')})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await until(() => seen.includes('listening'), 'listening');
  const ev = () => ({ event_id: randomUUID(), type: 'run.updated', payload: '{}', occurred_at: Date.now() });
  // Rolled back: no notification. Then committed: one. (The second proves the first would have arrived by then.)
  t.throws(() =>
    s.tx(() => {
      s.outbox.append(ev());
      throw new Error('roll back');
    }),
  );
  await s.commit(() => s.outbox.append(ev()));
  await until(() => seen.includes('notify'), 'the notification');
  // Every write transaction notifies when it commits (the log lock and its notification are
  // taken at BEGIN); the rolled-back one did not add one of its own, but the store's other
  // transactions may have, so this counts at least the committed append's.
  t.ok(seen.filter((e) => e === 'notify').length >= 1, 'the committed append notified');
  // The listening connection is killed: reported, reopened, listening again.
  seen.length = 0;
  other.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tyrum-listen'");
  await until(() => seen.includes('lost') && seen.includes('listening'), 'lost, then listening again');
  await s.commit(() => s.outbox.append(ev()));
  await until(() => seen.includes('notify'), 'a notification after the reconnect');
  t.pass('notified after reconnecting');
});
