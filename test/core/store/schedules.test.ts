import t, { type Test } from 'tap';
import type { ScheduleRow } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

const sched = (id: string, over: Partial<ScheduleRow> = {}): ScheduleRow => ({
  id, name: id, kind: 'interval', cron: null, timezone: 'UTC', every_ms: 1000, anchor_at: 0, target: '{}', missed_policy: 'skip', state: 'active',
  next_fire_at: 1000, last_fire_at: null, fires: 0, missed: 0, created_by: 'u', created_at: 1, updated_at: 1, ...over,
});

forEachBackend(t, 'a due tick is claimed once, and fired once', async (t: Test, { repos: s }) => {
  s.schedules.insert(sched('sch_a'));
  s.schedules.insert(sched('sch_b', { next_fire_at: 500 }));
  s.schedules.insert(sched('sch_c', { state: 'paused', next_fire_at: null }));
  t.throws(() => s.schedules.insert(sched('sch_d', { kind: 'cron' })), /CHECK/, 'a cron schedule needs its expression');
  t.same(s.schedules.due(1000, 10).map((x) => x.id), ['sch_b', 'sch_a']);
  t.equal(s.schedules.earliest(), 500);
  t.equal(s.schedules.advance('sch_a', 1000, 2000, true, 2, 1001), true);
  t.equal(s.schedules.advance('sch_a', 1000, 2000, true, 0, 1001), false, 'the second claimer loses');
  t.match(s.schedules.get('sch_a'), { next_fire_at: 2000, fires: 1, missed: 2, last_fire_at: 1001 });
  const fire = { schedule_id: 'sch_a', fire_at: 1000, ticks: 1, fired_at: 1001, owner: 'w', run_id: null, conversation_id: null, message_id: null, workflow_id: null, error: null };
  t.equal(s.schedules.insertFire(fire), true);
  t.equal(s.schedules.insertFire(fire), false, 'a tick fires once');
  s.schedules.updateFire('sch_a', 1000, { run_id: 'r1', conversation_id: null, message_id: null, workflow_id: 'wf_1', error: null });
  t.same(s.schedules.fires('sch_a', 5), [{ ...fire, run_id: 'r1', workflow_id: 'wf_1' }]);
  t.equal(s.schedules.setState('sch_a', 'paused', null, 5), true);
  t.equal(s.schedules.setState('sch_a', 'paused', null, 6), false);
  t.same(s.schedules.list().map((x) => x.name), ['sch_a', 'sch_b', 'sch_c']);
  t.equal(s.schedules.remove('sch_a'), true);
  t.same(s.schedules.fires('sch_a', 5), [], 'fires go with their schedule');
});
