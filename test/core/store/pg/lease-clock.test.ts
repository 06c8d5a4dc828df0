// On PostgreSQL, leases (runs, turns, deliveries), replica heartbeats and dispatch deadlines are
// measured on the server's clock, not on the caller's (docs/dev/cluster-leases.md, "Whose clock").
// Each case has a replica whose clock runs 10 minutes ahead and one 10 minutes behind (the `now`
// they pass, as an injected clock would): the fast one cannot take a live lease, and neither keeps
// a dead one alive (a lease the fast one took expires after its length, not 10 minutes later; the
// slow one takes an expired lease at once). The fencing of the old holder is checked on this store
// too (the same assertions on SQLite are in the repository tests, with the caller's times).
import t, { type Test } from 'tap';
import { openPgStore, type RunRow, type Store } from '../../../../core/store/index.js';
import { sharedPostgres, skipWithoutPostgres } from '../../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);

const SKEW = 10 * 60_000;
const fast = (): number => Date.now() + SKEW;
const slow = (): number => Date.now() - SKEW;
/** Long enough that a live lease stays alive through a few statements on a loaded box. */
const LIVE = 20_000;
/** Short enough to wait out. */
const SHORT = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function open(t: Test): Promise<Store> {
  const s = openPgStore((await cluster()).database(), { timeoutMs: 5_000 });
  t.teardown(async () => {
    s.close();
    await s.whenClosed();
  });
  return s;
}

function run(id: string): RunRow {
  return {
    id, kind: 'tool', state: 'queued', created_by: 'u', idempotency_key: null, request_hash: 'h', created_at: 1, updated_at: 1, finished_at: null,
    cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: null, error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0,
  };
}

/** `at` lies within `ms` after [before, after] on the real clock (this host is the server's). */
function near(t: Test, at: number | null | undefined, before: number, after: number, ms: number, what: string): void {
  t.ok(at !== null && at !== undefined && at >= before + ms - 5 && at <= after + ms + 5, `${what}: ${at} within [${before + ms}, ${after + ms}]`);
}

t.test('runs: a replica 10 min ahead neither steals a live lease nor keeps a dead one; the old holder is fenced', { skip }, async (t) => {
  const s = await open(t);
  await s.commit(() => {
    s.execution.insertRun(run('r1'));
    s.execution.insertRun(run('r2'));
  });
  let t0 = Date.now();
  const a = s.tx(() => s.execution.claim('r1', 'A', Date.now(), LIVE))!;
  near(t, a.lease_expires_at, t0, Date.now(), LIVE, "A's lease, from the server's clock");
  t.equal(s.execution.hasClaimable(fast()) && s.execution.claimable(fast(), 10).includes('r1'), false, 'the fast replica does not see r1 as claimable');
  t.equal(s.tx(() => s.execution.claim('r1', 'F', fast(), LIVE)), undefined, 'nor takes it');

  t0 = Date.now();
  const f = s.tx(() => s.execution.claim('r2', 'F', fast(), SHORT))!;
  near(t, f.lease_expires_at, t0, Date.now(), SHORT, "the fast replica's lease is as long as asked, not 10 min longer");
  t.equal(s.tx(() => s.execution.claim('r2', 'S', slow(), LIVE)), undefined, 'alive: not taken');
  await sleep(SHORT + 100);
  t.ok(s.execution.claimable(slow(), 10).includes('r2'), 'once expired, the slow replica sees it claimable');
  const taken = s.tx(() => s.execution.claim('r2', 'S', slow(), LIVE))!;
  t.match(taken, { lease_owner: 'S', fencing_token: 2 }, 'and takes it');
  const stale = { owner: 'F', token: 1 };
  t.equal(s.tx(() => s.execution.renewLease('r2', stale, fast(), LIVE)), false, 'the old holder cannot renew');
  t.equal(s.tx(() => s.execution.updateRun('r2', { state: 'succeeded', updated_at: 2 }, { fence: stale })), undefined, 'nor write');
  t.ok(s.tx(() => s.execution.renewLease('r2', { owner: 'S', token: 2 }, slow(), LIVE)), 'the new holder renews');
  t.equal(s.tx(() => s.execution.expireLeasesOf('S', slow())), 1, "a restarted S frees its lease (on the server's clock)");
  t.equal(s.tx(() => s.execution.claim('r2', 'A', Date.now(), LIVE))?.fencing_token, 3, 'claimable at once');
});

t.test('a run leased at submission gets its expiry from the server clock', { skip }, async (t) => {
  const s = await open(t);
  const t0 = Date.now();
  const now = fast();
  await s.commit(() => s.execution.insertRun({ ...run('r1'), state: 'running', lease_owner: 'F', lease_expires_at: now + SHORT, fencing_token: 1, created_at: now, updated_at: now }));
  near(t, s.execution.getRun('r1')?.lease_expires_at, t0, Date.now(), SHORT, 'the lease');
  await sleep(SHORT + 100);
  t.match(s.tx(() => s.execution.claim('r1', 'A', Date.now(), LIVE)), { lease_owner: 'A', fencing_token: 2 }, 'taken over once expired');
});

t.test('turns: not taken over while alive by a fast clock, taken at expiry by a slow one; late writes fenced', { skip }, async (t) => {
  const s = await open(t);
  const c = s.conversations;
  await s.commit(() => {
    c.insertConversation({ id: 'conv_1', channel: 'operator', account: 'tok', thread: 'conv_1', title: null, created_by: 'u', created_at: 1, updated_at: 1 });
    c.insertTurn({ id: 'turn_1', conversation_id: 'conv_1', state: 'queued', waiting: null, steps: 0, usage: '{}', error: null, owner: null, created_at: 1, started_at: null, finished_at: null });
  });
  let t0 = Date.now();
  const a = s.tx(() => c.claimTurn('turn_1', 'F', fast(), SHORT))!;
  near(t, a.lease_expires_at, t0, Date.now(), SHORT, "the fast replica's turn lease");
  t.equal(c.leaseAlive(a.lease_expires_at, slow()), true, 'alive for the slow replica too');
  t.equal(s.tx(() => c.takeOverTurn('turn_1', 'S', slow(), LIVE)), undefined, 'not taken over while alive');
  await sleep(SHORT + 100);
  t.equal(c.leaseAlive(a.lease_expires_at, slow()), false, 'expired, whatever the slow clock says');
  t0 = Date.now();
  const b = s.tx(() => c.takeOverTurn('turn_1', 'S', slow(), LIVE))!;
  t.match(b, { owner: 'S', fencing_token: 2 });
  near(t, b.lease_expires_at, t0, Date.now(), LIVE, "S's lease");
  t.equal(c.leaseAlive(b.lease_expires_at, fast()), true, "the fast replica sees S's lease alive");
  t.equal(s.tx(() => c.takeOverTurn('turn_1', 'F', fast(), LIVE)), undefined, 'and does not take it');
  t.equal(s.tx(() => c.renewTurnLease('turn_1', { owner: 'F', token: 1 }, fast(), LIVE)), false, 'F can no longer renew');
  t.equal(s.tx(() => c.updateTurn('turn_1', ['running'], { steps: 5 }, { owner: 'F', token: 1 })), false, "F's late write is refused");
  t.equal(s.tx(() => c.renewTurnLease('turn_1', { owner: 'S', token: 2 }, slow(), LIVE)), true, 'S renews');
  t.equal(s.tx(() => c.expireTurnLeases('S', slow())), 1, "S's restart frees its lease");
  t.equal(s.tx(() => c.takeOverTurn('turn_1', 'A', Date.now(), LIVE))?.fencing_token, 3, 'taken at once');
});

t.test('deliveries: a claim by a fast clock lasts its length; a slow clock takes it after expiry; the old claim is fenced', { skip }, async (t) => {
  const s = await open(t);
  const c = s.conversations;
  await s.commit(() => {
    c.insertInstance({ id: 'chan_1', plugin_id: 'tg', channel: 'telegram', name: 'bot', api_base: 'https://api', credential_secret: null, verify_secret: 'v', dm_policy: 'pairing', created_at: 1, updated_at: 1 });
    c.insertConversation({ id: 'conv_1', channel: 'telegram', account: 'tok', thread: 'conv_1', title: null, created_by: 'u', created_at: 1, updated_at: 1 });
    c.insertMessage({ id: 'msg_1', conversation_id: 'conv_1', role: 'assistant', content: 'hi', tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: '{"source":"operator"}', usage: null, created_at: 1 });
    c.insertDelivery({ id: 'dlv_1', instance_id: 'chan_1', conversation_id: 'conv_1', message_id: 'msg_1', chat_id: 'c1', thread_id: null, text: 't', state: 'pending', parts_sent: 0, receipts: '[]', attempts: 0, next_attempt_at: 0, last_error: null, created_at: 1, updated_at: 1, finished_at: null });
  });
  const t0 = Date.now();
  const [f] = s.tx(() => c.claimDeliveries('F', fast(), SHORT, 10));
  near(t, f?.claim_expires_at, t0, Date.now(), SHORT, "the fast replica's claim");
  t.same(s.tx(() => c.claimDeliveries('S', slow(), LIVE, 10)), [], 'alive: not claimed again');
  t.same(c.dueDeliveries(fast(), 10), [], 'nor due for the fast replica');
  await sleep(SHORT + 100);
  t.same(c.dueDeliveries(slow(), 10).map((d) => d.id), ['dlv_1'], 'expired: due, whatever the slow clock says');
  t.same(s.tx(() => c.claimDeliveries('S', slow(), LIVE, 10)).map((d) => [d.id, d.claim_owner, d.claim_token]), [['dlv_1', 'S', 2]], 'taken over');
  // The wake-up for a claim's end is on each caller's clock: a slow replica waits the claim's
  // length, not the skew on top of it (and a fast one not less).
  // (Up to 5 s early: the claim was taken a moment before this reads it, on a loaded box.)
  for (const [clock, who] of [[slow, 'slow'], [fast, 'fast']] as const) {
    const now = clock();
    const at = c.nextDeliveryAt(now);
    t.ok(at !== null && at <= now + LIVE + 5 && at >= now + LIVE - 5_000, `the ${who} replica's wake-up for the claim's end: ${at === null ? null : at - now} ms from its now, about ${LIVE}`);
  }
  t.same(s.tx(() => c.claimDeliveries('F', fast(), LIVE, 10)), [], 'the fast replica does not take the live claim');
  t.equal(s.tx(() => c.renewDeliveryClaim('dlv_1', { owner: 'F', token: 1 }, fast(), LIVE)), false, 'F cannot renew');
  t.equal(s.tx(() => c.updateDelivery('dlv_1', { parts_sent: 1, updated_at: 2 }, { owner: 'F', token: 1 })), false, "F's late write is refused");
  t.equal(s.tx(() => c.renewDeliveryClaim('dlv_1', { owner: 'S', token: 2 }, slow(), LIVE)), true, 'S renews');
  t.equal(s.tx(() => c.expireDeliveryClaims('S', slow())), 1, "S's restart frees its claim");
  t.equal(s.tx(() => c.claimDeliveries('A', Date.now(), LIVE, 10)).length, 1, 'claimable at once');
});

t.test('replicas: heartbeats and dispatch deadlines on the server clock; skewed replicas agree on who is dead', { skip }, async (t) => {
  const s = await open(t);
  const t0 = Date.now();
  s.tx(() => {
    s.cluster.beat('F', fast());
    s.cluster.beat('S', slow());
  });
  for (const r of s.cluster.replicas()) near(t, r.heartbeat_at, t0, Date.now(), 0, `${r.id}'s heartbeat`);
  t.same(s.cluster.dead(fast(), 2_000), [], 'the fast replica does not take the slow one for dead');
  const d = { id: 'd1', pairing_id: 'p1', origin_replica: 'F', target_replica: 'S', request: '{}', created_at: fast(), deadline_at: fast() + SHORT };
  t.equal(s.tx(() => s.cluster.dispatch(d)), true);
  near(t, s.cluster.get('d1')?.deadline_at, t0, Date.now(), SHORT, "the fast origin's deadline");
  t.equal(s.tx(() => s.cluster.sweep(fast(), 0)), 0, 'not swept before its deadline by the fast clock');
  t.same(s.tx(() => s.cluster.remove('S', 2_000, 'unsent', 'unknown', fast())).removed, false, 'nor is S pruned by it');
  await sleep(SHORT + 100);
  s.tx(() => s.cluster.beat('F', fast()));
  t.same(s.cluster.dead(slow(), SHORT).map((r) => r.id), ['S'], 'S missed its beats: dead, even for a slow clock');
  t.equal(s.tx(() => s.cluster.remove('S', SHORT, 'unsent', 'unknown', slow())).removed, true, 'pruned');
  t.equal(s.tx(() => s.cluster.sweep(slow(), 0)), 1, 'swept past its deadline, even by a slow clock');
});
