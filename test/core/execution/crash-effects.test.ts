// TESTPLAN A2: the same crash points with idempotent and non-idempotent steps. Idempotent:
// exactly one external effect per key. Non-idempotent: never silently re-run; the step is
// `outcome_unknown` and waits for an operator, whose retry or skip then completes the run.
import t from 'tap';
import { crashAndRecover, type CrashCase } from './fixtures/crash-harness.js';

const cases: Array<CrashCase & { why: string }> = [
  { at: 'step_started:1', scenario: 'workflow', why: 'read-only step cut off before the call: retried' },
  { at: 'tool_returned:1', scenario: 'workflow', why: 'read-only step returned, result unsaved: retried' },
  { at: 'step_started:2', scenario: 'workflow', why: 'keyed charge cut off before the call: retried, one charge' },
  { at: 'tool_returned:2', scenario: 'workflow', why: 'keyed charge made, result unsaved: retried, the key dedupes, one charge' },
  { at: 'step_started:3', scenario: 'workflow', expectUnknown: ['0/2'], why: 'mail cut off before the call: outcome_unknown, operator retries' },
  { at: 'tool_returned:3', scenario: 'workflow', expectUnknown: ['0/2'], why: 'mail sent, result unsaved: outcome_unknown, operator skips' },
  { at: 'step_started:1', scenario: 'approval', approveInChild: true, expectUnknown: ['0/0'], why: 'approved deploy cut off: outcome_unknown, the consumed approval still covers the retry' },
  { at: 'tool_returned:1', scenario: 'approval', approveInChild: true, expectUnknown: ['0/0'], why: 'approved deploy done, result unsaved: outcome_unknown, operator skips' },
];

for (const c of cases) {
  t.test(`kill -9 at ${c.at} (${c.scenario}): ${c.why} (A2)`, async (t) => {
    const { env, operator, runIds } = await crashAndRecover(t, c);
    const tool = c.scenario === 'workflow' ? 'mail.send' : 'deploy.prod';
    t.equal(env.world.effects({ tool_id: tool }).length, 1, `exactly one ${tool} effect`);
    if (c.scenario === 'workflow') t.equal(env.world.effects({ tool_id: 'pay.charge', key: 'pay-1' }).length, 1, 'exactly one charge for its key');
    if (c.at.startsWith('tool_returned:2')) t.equal(env.world.calls({ tool_id: 'pay.charge' }).length, 2, 'the charge was called twice yet charged once');
    // The operator found the effect missing after a cut before the call (retry), present after it (skip).
    const expected = c.at.startsWith('step_started') ? 'retry' : 'skip';
    for (const o of operator) {
      const [where, action] = o.split(':');
      const [ri, idx] = where!.split('/').map(Number);
      t.equal(action, expected, `the operator chose ${expected}`);
      t.equal(env.engine.get(runIds[ri!]!).steps[idx!]?.state, action === 'skip' ? 'skipped' : 'succeeded', "the operator's decision is recorded on the step");
    }
  });
}
