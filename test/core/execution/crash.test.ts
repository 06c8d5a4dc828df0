// TESTPLAN A1: kill -9 at each named point of a run, restart, check the invariants.
import t from 'tap';
import { CRASH_POINTS } from '../../../core/execution/index.js';
import { crashAndRecover, type CrashCase } from './fixtures/crash-harness.js';

// Hits count W.0 (read), W.1 (keyed charge), W.2 (mail), then T.0 (echo); see fixtures/scenarios.ts.
const cases: CrashCase[] = [
  { at: 'accepted', scenario: 'workflow' },
  { at: 'lease_taken', scenario: 'workflow' },
  { at: 'lease_taken:2', scenario: 'workflow' },
  { at: 'step_started', scenario: 'workflow' },
  { at: 'tool_returned', scenario: 'workflow' },
  { at: 'result_saved', scenario: 'workflow' },
  { at: 'result_saved:3', scenario: 'workflow' },
  { at: 'waiting_approval', scenario: 'approval' },
  // Inside a group commit: its units written but not committed, committed but the log not yet
  // synced, or synced but nobody told.
  { at: 'group_commit_before:5', scenario: 'workflow' },
  { at: 'group_commit_written:5', scenario: 'workflow' },
  { at: 'group_commit_written:4', scenario: 'approval' },
  { at: 'group_commit_after:5', scenario: 'workflow' },
  { at: 'group_commit_before:7', scenario: 'workflow' },
  { at: 'group_commit_after:7', scenario: 'workflow' },
  // The 4th, not the 5th: under load the approval scenario's commits share fewer groups and it may
  // reach its pause (and print "settled") after only 4 (a full test run under load failed once on group_commit_after:5).
  { at: 'group_commit_after:4', scenario: 'approval' },
  // Runs taken at submission (runNow: the protocol's tool.invoke), the submission carried into their first commit.
  { at: 'accepted', scenario: 'workflow', runNow: true },
  { at: 'step_started:2', scenario: 'workflow', runNow: true },
  { at: 'group_commit_before:5', scenario: 'workflow', runNow: true },
  { at: 'group_commit_written:4', scenario: 'workflow', runNow: true },
  { at: 'group_commit_after:5', scenario: 'workflow', runNow: true },
  { at: 'result_saved:2', scenario: 'workflow', runNow: true },
];

t.test('every named crash point is exercised', async (t) => {
  // schedule_fired is the scheduler's: test/core/scheduler/gateway.test.ts kills a real gateway there.
  t.same([...new Set(cases.map((c) => c.at.split(':')[0]))].sort(), [...CRASH_POINTS].filter((p) => p !== 'schedule_fired').sort());
});

for (const c of cases) {
  t.test(`kill -9 at ${c.at} (${c.scenario}${c.runNow ? ', run now' : ''}): every accepted run completes, no completed step runs again, the database and audit chain are intact (A1)`, async (t) => {
    const { env, accepted } = await crashAndRecover(t, c);
    t.ok(env.engine.list().length >= 1, 'work was accepted before the crash');
    // 'accepted' falls before the acknowledgement. So may the first 'lease_taken': the child's
    // engine (polling every 20 ms) can claim the run once its submission is committed, before the
    // log sync that acknowledges it returns (seen in full runs under load); the run is in the
    // database either way (checked above), and every run there must complete.
    if (c.at !== 'accepted' && c.at !== 'lease_taken') t.ok(accepted.length >= 1, 'the child acknowledged a run before dying');
    if (c.scenario === 'workflow') {
      t.equal(env.world.effects({ tool_id: 'pay.charge' }).length, 1, 'one charge');
      t.equal(env.world.effects({ tool_id: 'mail.send' }).length, 1, 'one mail');
    } else {
      t.equal(env.world.effects({ tool_id: 'deploy.prod' }).length, 1, 'one deploy, after the approval');
      t.equal(env.approvals.list({ state: 'approved' }).length, 1);
    }
  });
}
