import t, { type Test } from 'tap';
import { forEachBackend } from '../../helpers/store-backends.js';

/** Tests whose times are the caller's: on PostgreSQL leases, heartbeats and deadlines use the server's clock. */
const PG_CLOCK = { postgres: 'caller-set times: PostgreSQL measures leases on its own clock (test/core/store/pg/lease-clock.test.ts)' };

const conn = (id: string, replica: string, pairing: string, at: number) => ({ connection_id: id, replica_id: replica, device_id: `dev_${pairing}`, pairing_id: pairing, connected_at: at });

forEachBackend(t, 'replica directory: heartbeats, node connections of live replicas, a dead replica pruned once', async (t: Test, { repos: s, tx }) => {
  tx(() => {
    s.cluster.beat('A', 100);
    s.cluster.beat('B', 100);
  });
  tx(() => s.cluster.beat('A', 200));
  t.same(s.cluster.replicas().map((r) => [r.id, r.started_at, r.heartbeat_at]), [['A', 100, 200], ['B', 100, 100]], 'a beat moves the heartbeat, not the start');
  tx(() => {
    s.cluster.connect(conn('c1', 'B', 'p1', 110));
    s.cluster.connect(conn('c1', 'B', 'p1', 999)); // the heartbeat re-writes it: unchanged
    s.cluster.connect(conn('c2', 'A', 'p2', 120));
  });
  t.same(s.cluster.connections().map((c) => [c.connection_id, c.replica_id, c.connected_at]), [['c1', 'B', 110], ['c2', 'A', 120]]);
  t.equal(s.cluster.holder('p1', 'A')?.replica_id, 'B', 'A finds the replica holding p1');
  t.equal(s.cluster.holder('p2', 'A'), undefined, 'a connection on the asking replica is not another holder');
  t.same(s.cluster.dead(250, 100).map((r) => r.id), ['B']);

  // A dispatch to B, one pending and one claimed, then B is pruned.
  const d = (id: string) => ({ id, pairing_id: 'p1', origin_replica: 'A', target_replica: 'B', request: '{"x":1}', created_at: 130, deadline_at: 10_000 });
  t.equal(tx(() => s.cluster.dispatch(d('d1'))), true);
  t.equal(tx(() => s.cluster.dispatch(d('d2'))), true);
  t.equal(tx(() => s.cluster.dispatch({ ...d('d3'), target_replica: 'Z' })), false, 'no dispatch to a replica that is not in the directory');
  t.same(s.cluster.pendingFor('B', 10), ['d1', 'd2']);
  t.equal(tx(() => s.cluster.claim('d2', 'A', 140)), undefined, 'only the target claims');
  t.equal(tx(() => s.cluster.claim('d2', 'B', 140))?.state, 'claimed');
  t.equal(tx(() => s.cluster.claim('d2', 'B', 141)), undefined, 'claimed once');

  t.same(tx(() => s.cluster.remove('B', 250, 'unsent', 'unknown', 300)), { removed: false, connections: [], failed: [] }, 'a replica that beat after the cutoff is left alone');
  const pruned = tx(() => s.cluster.remove('B', 150, 'unsent', 'unknown', 300));
  t.equal(pruned.removed, true);
  t.same(pruned.connections.map((c) => c.connection_id), ['c1']);
  t.same(pruned.failed, ['d1', 'd2']);
  t.same([s.cluster.get('d1')?.state, s.cluster.get('d1')?.result, s.cluster.get('d2')?.result], ['done', 'unsent', 'unknown'], 'pending: nothing was sent; claimed: unknown');
  t.equal(tx(() => s.cluster.complete('d2', 'B', 'late', 310)), false, 'no result written without the claim');
  t.equal(tx(() => s.cluster.remove('B', 150, 'unsent', 'unknown', 300)).removed, false, 'pruned once');
  t.same(s.cluster.connections().map((c) => c.connection_id), ['c2']);
  t.equal(s.cluster.holder('p1', 'A'), undefined);
}, PG_CLOCK);

forEachBackend(t, 'a dispatch: claimed, answered under the claim, withdrawn only while pending, swept after its deadline', async (t: Test, { repos: s, tx }) => {
  tx(() => {
    s.cluster.beat('A', 100);
    s.cluster.beat('B', 100);
  });
  const d = (id: string, deadline: number) => ({ id, pairing_id: 'p1', origin_replica: 'A', target_replica: 'B', request: '{}', created_at: 100, deadline_at: deadline });
  tx(() => {
    s.cluster.dispatch(d('d1', 1_000));
    s.cluster.dispatch(d('d2', 2_000));
  });
  t.equal(tx(() => s.cluster.complete('d1', 'B', 'r', 110)), false, 'not claimed yet: no result');
  tx(() => s.cluster.claim('d1', 'B', 110));
  t.equal(tx(() => s.cluster.withdraw('d1', 'w', 111)), false, 'a claimed dispatch is not withdrawn');
  t.equal(tx(() => s.cluster.complete('d1', 'B', 'answer', 120)), true);
  t.same([s.cluster.get('d1')?.state, s.cluster.get('d1')?.result], ['done', 'answer']);
  t.equal(tx(() => s.cluster.withdraw('d2', 'w', 121)), true, 'a pending dispatch is withdrawn');
  t.equal(tx(() => s.cluster.claim('d2', 'B', 122)), undefined, 'and can no longer be claimed');
  t.equal(tx(() => s.cluster.sweep(1_500, 0)), 1, 'past its deadline');
  t.same([s.cluster.get('d1'), s.cluster.get('d2')?.id], [undefined, 'd2']);
  tx(() => s.cluster.forget('d2'));
  t.equal(s.cluster.get('d2'), undefined);
}, PG_CLOCK);
