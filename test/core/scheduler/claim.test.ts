import t from 'tap';
import { setup, eventually, type Stack } from '../execution/fixtures/world.js';
import { Scheduler } from '../../../core/scheduler/index.js';
import type { Clock } from '../execution/fixtures/world.js';

const cli = { kind: 'cli', user: 'test' };

function schedulerOf(s: Stack, clock: Clock, owner: string): Scheduler {
  return new Scheduler({ store: s.store, events: s.events, audit: s.audit, owner, engine: s.engine, now: clock.now });
}

t.test('two schedulers on one database racing for the same ticks fire each tick exactly once', async (t) => {
  const env = setup(t);
  const other = env.reopen();
  const a = schedulerOf(env, env.clock, 'a');
  const b = schedulerOf(other, env.clock, 'b');
  const row = await a.add({ name: 'ping', every_ms: 60_000, target: { type: 'tool', tool_id: 'echo', args: { n: 1 } } }, cli);
  const won: string[] = [];
  for (let i = 0; i < 5; i++) {
    env.clock.advance(60_000);
    const passes = await Promise.all([a.tick(), b.tick(), a.tick(), b.tick()]);
    passes.forEach((r, i) => won.push(...r.map(() => (i % 2 === 0 ? 'a' : 'b'))));
    // A late pass of either finds nothing more to claim.
    t.same([...(await a.tick()), ...(await b.tick())], []);
  }
  t.equal(won.length, 5, `one fire per tick (won by ${won.join(',')})`);
  const fires = env.store.schedules.fires(row.id, 100);
  t.equal(fires.length, 5);
  t.equal(new Set(fires.map((f) => f.fire_at)).size, 5);
  t.same(fires.map((f) => f.fire_at).sort(), [1, 2, 3, 4, 5].map((k) => row.anchor_at + k * 60_000));
  for (const f of fires) {
    const run = env.store.execution.getRun(f.run_id!);
    t.equal(run?.idempotency_key, `sched:${row.id}:${f.fire_at}`);
    t.equal(run?.created_by, `schedule:${row.id}`);
  }
  t.equal(env.store.execution.listRuns({ limit: 100 }).length, 5, 'five runs, no more');
  // The engine runs them like any call.
  await eventually(() => env.store.execution.listRuns({ limit: 100 }).every((r) => r.state === 'succeeded'), 5000, 'runs succeeded');
  const outbox = env.events.after(0, 1000).filter((e) => e.type === 'schedule.fired');
  t.equal(outbox.length, 5, 'one durable schedule.fired event per fire');
  t.equal(env.verifyAudit().ok, true);
  const fired = env.store.audit.page(0, 1000, 'schedule.fired').map((e) => JSON.parse(e.data) as { run_id: string });
  t.same(fired.map((d) => d.run_id).sort(), fires.map((f) => f.run_id).sort(), 'one audit entry per fire, naming its run');
});

t.test('many concurrent passes over many schedules still fire each tick once', async (t) => {
  const env = setup(t, { start: false });
  const stacks = [env as Stack, env.reopen(), env.reopen()];
  const s = stacks.map((x, i) => schedulerOf(x, env.clock, `s${i}`));
  for (let i = 0; i < 10; i++) await s[0]!.add({ name: `job${i}`, every_ms: 1000, target: { type: 'tool', tool_id: 'echo', args: { i } } }, cli);
  for (let k = 0; k < 3; k++) {
    env.clock.advance(1000);
    const results = await Promise.all(s.flatMap((x) => [x.tick(), x.tick()]));
    t.equal(results.flat().length, 10, `tick ${k}: ten fires across all passes`);
  }
  t.equal(env.store.execution.listRuns({ limit: 1000 }).length, 30);
});

t.test('after downtime: skip fires nothing for missed ticks, catch_up_once fires once for all of them', async (t) => {
  const env = setup(t);
  const first = schedulerOf(env, env.clock, 'first');
  const skip = await first.add({ name: 'skipper', every_ms: 5 * 60_000, target: { type: 'tool', tool_id: 'echo', args: {} }, missed: 'skip' }, cli);
  const catchUp = await first.add({ name: 'catcher', every_ms: 5 * 60_000, target: { type: 'tool', tool_id: 'echo', args: {} }, missed: 'catch_up_once' }, cli);
  // The gateway is down for 22 minutes: ticks at +5, +10, +15 and +20 pass unclaimed.
  env.clock.advance(22 * 60_000);
  const restarted = schedulerOf(env.reopen(), env.clock, 'restarted');
  const out = await restarted.tick();
  const bySchedule = Object.fromEntries(out.map((o) => [o.name, o]));
  t.equal(bySchedule.skipper?.fire_at, null, 'skip: no fire');
  t.equal(bySchedule.skipper?.missed, 4);
  t.equal(bySchedule.catcher?.fire_at, catchUp.anchor_at + 20 * 60_000, 'catch_up_once: one fire, at the last missed tick');
  t.equal(bySchedule.catcher?.ticks, 4);
  t.equal(env.store.schedules.fires(skip.id, 10).length, 0);
  t.equal(env.store.schedules.fires(catchUp.id, 10).length, 1);
  // Both continue with the next future tick.
  t.equal(env.store.schedules.get(skip.id)?.next_fire_at, skip.anchor_at + 25 * 60_000);
  t.equal(env.store.schedules.get(catchUp.id)?.next_fire_at, catchUp.anchor_at + 25 * 60_000);
  t.same(await restarted.tick(), [], 'nothing more is due');
  // A tick reached a little late (a restart within a minute) is late, not missed: it fires under skip too.
  env.clock.advance(3 * 60_000 + 30_000);
  const late = await restarted.tick();
  t.same(late.map((o) => [o.name, o.ticks, o.missed]).sort(), [['catcher', 1, 0], ['skipper', 1, 0]]);
  const missed = env.store.audit.page(0, 1000, 'schedule.missed').map((e) => JSON.parse(e.data) as { name: string; ticks: number });
  t.same(missed, [{ ...missed[0], name: 'skipper', ticks: 4 }], 'the skipped ticks are audited');
  // Let the fired runs finish before the test's directory is removed (an engine writing into it
  // then made the removal fail under load).
  await eventually(() => env.store.execution.listRuns({ limit: 100 }).every((r) => r.state === 'succeeded'), 10_000, 'runs finished');
});

t.test('a paused schedule does not fire; resuming starts from the next tick, without catching up', async (t) => {
  const env = setup(t);
  const s = schedulerOf(env, env.clock, 'p');
  const row = await s.add({ name: 'p', every_ms: 60_000, target: { type: 'tool', tool_id: 'echo', args: {} }, missed: 'catch_up_once' }, cli);
  t.equal((await s.pause('p', cli)).changed, true);
  t.equal((await s.pause('p', cli)).changed, false, 'pausing twice is a no-op');
  env.clock.advance(10 * 60_000);
  t.same(await s.tick(), []);
  await s.resume('p', cli);
  t.same(await s.tick(), [], 'the paused time is not caught up');
  env.clock.advance(60_000);
  t.equal((await s.tick()).length, 1);
  t.same(s.next('p', 2).length, 2);
  await s.remove('p', cli);
  t.equal(env.store.schedules.get(row.id), undefined);
  t.equal(env.store.execution.listRuns({ limit: 10 }).length, 1, 'its run stays');
  await eventually(() => env.store.execution.listRuns({ limit: 10 }).every((r) => r.state === 'succeeded'), 5000, 'run finished');
});

t.test("a tool schedule's run goes through policy: a require_approval tool waits for an operator", async (t) => {
  const env = setup(t);
  const s = schedulerOf(env, env.clock, 'pol');
  await s.add({ name: 'deploy', cron: '*/5 * * * *', timezone: 'Europe/Berlin', target: { type: 'tool', tool_id: 'deploy.prod', args: { version: '1.2.3' } } }, cli);
  env.clock.advance(s.next('deploy', 1)[0]! - env.clock.now() + 1000);
  const [fire] = await s.tick();
  t.ok(fire?.run_id);
  const run = await eventually(() => {
    const r = env.store.committed.execution.getRun(fire!.run_id!);
    return r?.state === 'paused' ? r : undefined;
  }, 5000, 'run paused');
  t.equal(run.pause_reason, 'approval');
  t.equal(env.world.calls({ tool_id: 'deploy.prod' }).length, 0, 'the tool was not called');
  const approvals = env.approvals.list({});
  t.equal(approvals.length, 1);
  t.equal(approvals[0]?.tool_id, 'deploy.prod');
});

t.test('a fire whose target cannot start is recorded with its error and uses up the tick', async (t) => {
  const env = setup(t);
  const s = new Scheduler({ store: env.store, events: env.events, audit: env.audit, owner: 'x', now: env.clock.now });
  await s.add({ name: 'noengine', every_ms: 1000, target: { type: 'tool', tool_id: 'echo', args: {} } }, cli);
  env.clock.advance(1000);
  const [fire] = await s.tick();
  t.equal(fire?.error?.code, 'TYRUM_ERR_INTERNAL');
  t.same(await s.tick(), []);
  t.equal(env.store.execution.listRuns({ limit: 10 }).length, 0);
});
