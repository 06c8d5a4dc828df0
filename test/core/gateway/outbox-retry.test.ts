// Events another writer committed (the CLI; on PostgreSQL another replica) are read from the
// outbox when the gateway hears of the commit (data_version, or PostgreSQL's notification). A
// read that fails then (the store reconnecting) is retried with backoff until one succeeds, not
// left until some later change; close() cancels a pending retry. One process, the other writer a
// second store connection (openHome).
import t from 'tap';
import { openHome } from '../../../core/runtime.js';
import { startTestGateway, removeHome, connect, type TestGateway } from '../../helpers/gateway.js';
import type { OutboxEvent } from '../../../core/execution/index.js';

/** Makes the gateway's outbox reads fail while `failing()` says so; counts every read. */
function flakyReads(gw: TestGateway, failing: () => boolean): { reads: number[] } {
  const log = { reads: [] as number[] };
  const events = gw.engine.events;
  const real = events.after.bind(events);
  events.after = (cursor: number, limit?: number, tenant?: string): OutboxEvent[] => {
    log.reads.push(Date.now());
    if (failing()) throw new Error('the store is reconnecting');
    return real(cursor, limit, tenant);
  };
  return log;
}

/** An outbox event committed through a connection of its own, as the CLI commits one. */
async function writeElsewhere(gw: TestGateway, runId: string): Promise<void> {
  const svc = openHome(gw.home);
  try {
    await svc.approvals.events.commit((emit) => emit('run.updated', { run_id: runId, state: 'queued', kind: 'tool' }));
  } finally {
    await svc.close();
  }
}

async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test("a failed read of another writer's events is retried until it succeeds", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  let failuresLeft = 3;
  const log = flakyReads(gw, () => failuresLeft-- > 0);
  await writeElsewhere(gw, 'run_from_elsewhere');
  const pushed = await until('the event to be pushed', () => conn.frames.find((f) => f.type === 'run.updated' && (f.payload as { run_id?: string }).run_id === 'run_from_elsewhere'));
  t.ok(pushed, 'the event reached the client without any later change');
  t.ok(log.reads.length >= 4, `three failed reads, then one that succeeded (${log.reads.length} reads)`);
  const gaps = log.reads.slice(1, 4).map((at, i) => at - log.reads[i]!);
  t.ok(gaps[1]! >= gaps[0]! && gaps[2]! >= gaps[1]!, `the retries back off (${gaps.join(', ')} ms)`);
  const after = log.reads.length;
  await new Promise((r) => setTimeout(r, 600));
  t.equal(log.reads.length, after, 'no retry once a read succeeded');
});

t.test('close() cancels a pending retry', async (t) => {
  const gw = await startTestGateway();
  let closed = false;
  t.teardown(async () => {
    if (!closed) await gw.close();
    removeHome(gw.home);
  });
  const log = flakyReads(gw, () => true);
  await writeElsewhere(gw, 'run_never_read');
  await until('two failed reads', () => log.reads.length >= 2);
  await gw.close();
  closed = true;
  const atClose = log.reads.length;
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(log.reads.length, atClose, 'no read after close');
});
