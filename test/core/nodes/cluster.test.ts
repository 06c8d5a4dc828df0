// The origin side of a node dispatch through another replica (core/nodes/cluster.ts), on
// PostgreSQL in one process: the test plays the holding replica on the rows. What comes back is
// checked: an answer is returned as the node gave it, a coded error is rethrown, and a result that
// is not one of those (forged, or a code that does not exist) fails coded instead of being trusted.
import t, { type Test } from 'tap';
import { openPgStore, type PairingRow, type Store } from '../../../core/store/index.js';
import { NodeCluster } from '../../../core/nodes/cluster.js';
import type { NodeConnections } from '../../../core/nodes/host.js';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);

const pairing = { id: 'pair_1', node_name: 'box', device_id: 'dev_1' } as PairingRow;
const allowed = { id: 'fs.read', version: '1', definition_hash: 'h', read_only: true };
const none: NodeConnections = { paired: () => undefined, readiness: () => 'not connected', track: () => ({ items: [], dropped: 0, done: () => undefined }) };

async function origin(t: Test): Promise<{ s: Store; a: NodeCluster }> {
  const s = openPgStore((await cluster()).database());
  const a = new NodeCluster({ store: s, channel: s.nodeChannel!, connections: none, replicaId: 'A', pollMs: 50, log: () => undefined });
  t.teardown(async () => {
    await a.close();
    s.close();
    await s.whenClosed();
  });
  a.start();
  // The cluster's timers do not hold the process open (the gateway's server does): this test's does.
  const alive = setInterval(() => undefined, 1_000);
  t.teardown(() => clearInterval(alive));
  s.tx(() => {
    s.cluster.beat('B', Date.now());
    s.cluster.connect({ connection_id: 'c1', replica_id: 'B', device_id: 'dev_1', pairing_id: 'pair_1', connected_at: 1 });
  });
  return { s, a };
}

/** Plays replica B: claims the dispatch once it is written and completes it with `result`. */
async function holderWrites(s: Store, result: string): Promise<void> {
  for (;;) {
    const [id] = s.cluster.pendingFor('B', 1);
    if (id !== undefined) {
      s.tx(() => s.cluster.claim(id, 'B', Date.now()));
      s.tx(() => s.cluster.complete(id, 'B', result, Date.now()));
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const task = (n: number) => ({ dispatch_id: `dsp_${String(n).padStart(24, '0')}`, capability: 'fs.read', capability_version: '1', args: { path: 'a' }, timeout_ms: 30_000 });

t.test('an answer written by the holder comes back as the node gave it; errors coded; forged results refused', { skip }, async (t) => {
  const { s, a } = await origin(t);
  t.equal(a.holder('pair_1'), 'B');

  const answer = { ok: true, result: { output: { content: 'hi' }, evidence: { x: 1 } } };
  const [got] = await Promise.all([a.send('B', pairing, allowed, task(1)), holderWrites(s, JSON.stringify({ kind: 'answer', answer, streamed: [{ seq: 0 }], dropped: 0 }))]);
  t.same(got, { answer, streamed: { items: [{ seq: 0 }], dropped: 0 } });
  t.equal(s.cluster.get(task(1).dispatch_id), undefined, 'the origin removes the row once it read it');

  await t.rejects(Promise.all([a.send('B', pairing, allowed, task(2)), holderWrites(s, JSON.stringify({ kind: 'error', code: 'TYRUM_ERR_NODE_NOT_READY', message: 'not ready', details: { failed: 'ready' } }))]), { code: 'TYRUM_ERR_NODE_NOT_READY', details: { failed: 'ready' } }, "the holder's coded error");

  for (const [n, forged] of [
    [3, 'not json'],
    [4, JSON.stringify({ kind: 'error', code: 'TYRUM_ERR_MADE_UP', message: 'x', details: {} })],
    [5, JSON.stringify({ kind: 'answer', answer: { ok: true, result: 'a string' }, streamed: [], dropped: 0 })],
    [6, JSON.stringify({ kind: 'answer', answer: { ok: false, error: { code: 1 } }, streamed: [], dropped: 0 })],
    [7, JSON.stringify({ kind: 'answer', answer: { ok: true, result: {} }, streamed: ['x'], dropped: 0 })],
  ] as const) {
    await t.rejects(Promise.all([a.send('B', pairing, allowed, task(n)), holderWrites(s, forged)]), { code: 'TYRUM_ERR_NODE_DISCONNECTED', message: /cannot read/ }, `refused: ${forged.slice(0, 60)}`);
  }

  // The holder is gone from the directory: nothing is written, the node is offline.
  s.tx(() => s.cluster.remove('B', null, '{}', '{}', Date.now()));
  t.equal(a.holder('pair_1'), undefined);
  await t.rejects(a.send('B', pairing, allowed, task(8)), { code: 'TYRUM_ERR_NODE_UNAVAILABLE' });
  t.equal(s.cluster.get(task(8).dispatch_id), undefined);
});

t.test('an aborted call withdraws a dispatch not claimed yet; a dead holder fails it coded', { skip }, async (t) => {
  const { s, a } = await origin(t);
  const ac = new AbortController();
  const pending = a.send('B', pairing, allowed, task(1), ac.signal);
  for (let i = 0; i < 200 && s.cluster.pendingFor('B', 1).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  ac.abort(new Error('cancelled'));
  await t.rejects(pending, { message: 'cancelled' });
  t.equal(s.cluster.pendingFor('B', 1).length, 0, 'not left for the holder');

  // The holder claimed it and then died: pruned, the origin's call fails as disconnected (outcome unknown).
  const inFlight = a.send('B', pairing, allowed, task(2));
  for (;;) {
    const [id] = s.cluster.pendingFor('B', 1);
    if (id !== undefined) {
      s.tx(() => s.cluster.claim(id, 'B', Date.now()));
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // Pruned as dead (a cutoff of -1 ms: any heartbeat up to now counts as missed).
  s.tx(() => s.cluster.remove('B', -1, JSON.stringify({ kind: 'error', code: 'TYRUM_ERR_NODE_UNAVAILABLE', message: 'm', details: {} }), JSON.stringify({ kind: 'error', code: 'TYRUM_ERR_NODE_DISCONNECTED', message: 'died', details: {} }), Date.now()));
  await t.rejects(inFlight, { code: 'TYRUM_ERR_NODE_DISCONNECTED', message: 'died' });
});
