import t from 'tap';
import type { OutboxEvent } from '../../../core/execution/index.js';
import { setup } from './fixtures/world.js';

const me = 'tok_alice';

t.test('a client that drops mid-run catches up from its cursor with no gaps and stable event ids (B2)', async (t) => {
  const env = setup(t);
  const live: OutboxEvent[] = [];
  let unsubscribe: () => void = () => undefined;
  unsubscribe = env.engine.onEvent((e) => {
    live.push(e);
    if (live.length === 4) unsubscribe(); // the connection drops here
  });
  const { run } = await env.engine.submit({
    kind: 'workflow',
    steps: [
      { tool_id: 'echo', args: { a: 1 } },
      { tool_id: 'kv.read', args: {} },
      { tool_id: 'echo', args: { c: 3 } },
    ],
    created_by: me,
  });
  t.equal((await env.engine.wait(run.id, 5000)).run.state, 'succeeded');
  t.equal(live.length, 4, 'the client saw only the start of the run live');

  // Reconnect: catch up from the last seq it holds, in small pages.
  const cursor = live[live.length - 1]!.seq;
  const caught: OutboxEvent[] = [];
  for (let c = cursor; ; ) {
    const page = env.engine.events.after(c, 2);
    if (page.length === 0) break;
    caught.push(...page);
    c = page[page.length - 1]!.seq;
  }
  const all = env.engine.events.after(0, 1000);
  t.same([...live, ...caught].map((e) => e.seq), all.map((e) => e.seq), 'live + catch-up is exactly the outbox');
  t.same(all.map((e) => e.seq), Array.from({ length: all.length }, (_, i) => i + 1), 'seq has no gaps');
  t.equal(new Set(all.map((e) => e.event_id)).size, all.length, 'event ids are unique');

  // Duplicates are harmless: replaying overlapping pages and deduping by event_id gives the same set.
  const seen = new Map<string, OutboxEvent>();
  for (const e of [...live, ...env.engine.events.after(cursor - 2, 1000), ...env.engine.events.after(0, 1000)]) seen.set(e.event_id, e);
  t.equal(seen.size, all.length);

  // Every transition is there, in order.
  const runStates = all.filter((e) => e.type === 'run.updated').map((e) => e.payload.state);
  t.same(runStates, ['queued', 'running', 'succeeded']);
  const stepStates = all.filter((e) => e.type === 'step.updated').map((e) => `${e.payload.step_idx}:${e.payload.state}`);
  t.same(stepStates, ['0:running', '0:succeeded', '1:running', '1:succeeded', '2:running', '2:succeeded']);

  // After a restart the same events come back with the same ids.
  const again = env.reopen();
  t.same(again.events.after(0, 1000).map((e) => e.event_id), all.map((e) => e.event_id));
  t.equal(again.events.head(), all[all.length - 1]!.seq);
});

t.test('listeners are called only after the commit, and a throwing listener breaks nothing', async (t) => {
  const env = setup(t);
  const committedAtDelivery: boolean[] = [];
  env.engine.onEvent(() => {
    throw new Error('listener bug');
  });
  env.engine.onEvent((e) => {
    committedAtDelivery.push(env.engine.events.after(e.seq - 1, 1)[0]?.event_id === e.event_id);
  });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: me });
  t.equal((await env.engine.wait(run.id, 5000)).run.state, 'succeeded');
  t.ok(committedAtDelivery.length >= 4);
  t.ok(committedAtDelivery.every(Boolean), 'every delivered event was already readable from the outbox');
});

t.test('events.after validates its cursor and caps its page size', async (t) => {
  const env = setup(t, { start: false });
  t.throws(() => env.events.after(-1), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => env.events.after(0, 0), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  for (let i = 0; i < 3; i++) await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { i } }], created_by: me });
  t.equal(env.events.after(0, 1_000_000).length, 3);
  t.equal(env.events.after(3).length, 0);
});
