// The call observer watches; it never decides. One that throws, from any method, must leave every
// run's outcome and every caller's answer as they would be without it.
import t from 'tap';
import type { CallObserver } from '../../../core/telemetry/index.js';
import { setup } from '../execution/fixtures/world.js';

const METHODS = ['begin', 'stage', 'attempt', 'policy', 'end'] as const;

/** An observer whose `where` method throws every time. */
function throwing(where: (typeof METHODS)[number]): CallObserver {
  const boom = (m: string) => {
    if (m === where) throw new Error(`boom-${m}`);
  };
  return {
    begin: (info) => {
      boom('begin');
      return {
        fields: { run_id: info.run_id, step: info.step },
        stage: () => boom('stage'),
        attempt: () => boom('attempt'),
        policy: () => boom('policy'),
        end: () => boom('end'),
      };
    },
  };
}

/** `p`, or a rejection after `ms` (a caller left unanswered fails the test instead of hanging it). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

for (const where of METHODS) {
  t.test(`an observer whose ${where}() throws changes no outcome and leaves no caller unanswered; the engine warns once`, async (t) => {
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const errors: string[] = [];
    const env = setup(t, { calls: throwing(where), log: (level, message, data) => void (level === 'warn' ? warnings.push([message, data]) : level === 'error' && errors.push(message)) });
    // Taken at submission (a read-only first step answers from its one commit) ...
    const now = await within(env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'kv.read', args: { key: 'a' } }], created_by: 'tok_alice' }, { runNow: true }), 5000, 'submit runNow');
    const a = await within(env.engine.wait(now.run.id, 5000), 6000, 'wait');
    t.equal(a.run.state, 'succeeded', 'a run taken at submission succeeds');
    t.same(a.run.result, { value: 42, key: 'a' });
    // ... claimed from the queue, a write, a denied call and a workflow.
    const { run } = await env.engine.submit({ kind: 'workflow', steps: [{ tool_id: 'echo', args: { n: 1 } }, { tool_id: 'mail.send', args: { to: 'bob' } }], created_by: 'tok_alice' });
    const b = await within(env.engine.wait(run.id, 5000), 6000, 'wait');
    t.equal(b.run.state, 'succeeded', 'a queued workflow succeeds');
    t.equal(env.world.calls({ run_id: run.id }).length, 2, 'each step ran once');
    const denied = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'forbidden.op', args: {} }], created_by: 'tok_alice' });
    const c = await within(env.engine.wait(denied.run.id, 5000), 6000, 'wait');
    t.match(c.run.error, { code: 'TYRUM_ERR_POLICY_DENIED' }, 'a denied call is still denied (not an internal error)');
    t.same(errors, [], 'no error escaped into the engine');
    t.equal(warnings.length, 1, 'warned once');
    t.match(warnings[0], [/call observer threw/, { method: where, err: `boom-${where}` }]);
  });
}
