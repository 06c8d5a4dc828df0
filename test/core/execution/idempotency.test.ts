import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setup } from './fixtures/world.js';
import { spawnFixture } from './fixtures/spawn.js';

const me = 'tok_alice';
const steps = [{ tool_id: 'pay.charge', args: { amount: 7 }, idempotency_key: 'charge-7' }];

t.test('the same idempotency key sent 10× concurrently by 10 processes yields one run (B1)', async (t) => {
  const env = setup(t, { start: false });
  const go = join(env.dir, 'go');
  const children = Array.from({ length: 10 }, () =>
    spawnFixture('submit-runner.ts', [env.dbPath, env.checkpointPath, go, me, 'order-1', JSON.stringify(steps)], { AUDIT_TEST_KEY: env.keys.pem }),
  );
  await Promise.all(children.map((c) => c.line((l) => l === 'ready', 60_000)));
  writeFileSync(go, '');
  const outcomes = await Promise.all(children.map(async (c) => JSON.parse(await c.line((l) => l.startsWith('{'), 60_000)) as { run_id?: string; existing?: boolean; error?: string }));
  for (const c of children) t.equal((await c.exited()).code, 0);

  t.same(outcomes.filter((o) => o.error), [], 'no submission errored');
  const ids = new Set(outcomes.map((o) => o.run_id));
  t.equal(ids.size, 1, 'every caller got the same run');
  t.equal(outcomes.filter((o) => o.existing === false).length, 1, 'exactly one caller created it');
  const [id] = [...ids] as string[];
  t.equal(env.engine.list().length, 1);

  // In-process duplicates, and a different payload under the same key.
  const again = await Promise.all(Array.from({ length: 10 }, () => Promise.resolve().then(() => env.engine.submit({ kind: 'tool', steps, idempotency_key: 'order-1', created_by: me }))));
  t.ok(again.every((r) => r.run.id === id && r.existing));
  t.throws(() => env.engine.submit({ kind: 'tool', steps: [{ ...steps[0]!, args: { amount: 8 } }], idempotency_key: 'order-1', created_by: me }), { code: 'TYRUM_ERR_CONFLICT' });

  // The key is scoped to its creator.
  const bob = await env.engine.submit({ kind: 'tool', steps, idempotency_key: 'order-1', created_by: 'tok_bob' });
  t.equal(bob.existing, false);
  t.not(bob.run.id, id);

  // Progress: the one run executes, with one external effect.
  env.engine.start();
  const done = await env.engine.wait(id!, 5000);
  t.equal(done.run.state, 'succeeded');
  t.equal(env.world.effects({ tool_id: 'pay.charge', key: 'charge-7' }).length, 1);

  // After a restart the key still returns the original run and its result.
  await env.close();
  const restarted = env.reopen();
  const after = await restarted.engine.submit({ kind: 'tool', steps, idempotency_key: 'order-1', created_by: me });
  t.equal(after.existing, true);
  t.equal(after.run.id, id);
  t.equal(after.run.state, 'succeeded');
  t.same(after.run.result, { charged: 7, receipt: 'charge-7', replay: false });
  t.throws(() => restarted.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], idempotency_key: 'order-1', created_by: me }), { code: 'TYRUM_ERR_CONFLICT' });
});

t.test('a conflicting payload raced from several processes gets conflict while the original is kept (B1)', async (t) => {
  const env = setup(t, { start: false });
  const go = join(env.dir, 'go');
  const payloads = [steps, [{ tool_id: 'echo', args: { other: true } }], steps, [{ tool_id: 'echo', args: { other: true } }]];
  const children = payloads.map((p) => spawnFixture('submit-runner.ts', [env.dbPath, env.checkpointPath, go, me, 'k', JSON.stringify(p)], { AUDIT_TEST_KEY: env.keys.pem }));
  await Promise.all(children.map((c) => c.line((l) => l === 'ready', 60_000)));
  writeFileSync(go, '');
  const outcomes = await Promise.all(children.map(async (c) => JSON.parse(await c.line((l) => l.startsWith('{'), 60_000)) as { run_id?: string; error?: string }));
  for (const c of children) await c.exited();
  const runs = env.engine.list();
  t.equal(runs.length, 1, 'one run exists');
  const winner = runs[0]!;
  const winnerTool = env.engine.get(winner.id).steps[0]!.tool_id;
  outcomes.forEach((o, i) => {
    if (payloads[i]![0]!.tool_id === winnerTool) t.equal(o.run_id, winner.id, `caller ${i} with the winning payload gets the run`);
    else t.equal(o.error, 'TYRUM_ERR_CONFLICT', `caller ${i} with the other payload gets conflict`);
  });
});

t.test('submissions without a key are never merged', async (t) => {
  const env = setup(t, { start: false });
  const a = await env.engine.submit({ kind: 'tool', steps, created_by: me });
  const b = await env.engine.submit({ kind: 'tool', steps, created_by: me });
  t.not(a.run.id, b.run.id);
  t.equal(a.run.idempotency_key, null);
});

t.test('runs taken at submission (runNow): concurrent duplicates of one key yield one run and one effect; a different payload gets conflict', async (t) => {
  const env = setup(t);
  const submissions = await Promise.all(Array.from({ length: 8 }, () => env.engine.submit({ kind: 'tool', steps, idempotency_key: 'now-1', created_by: me }, { runNow: true })));
  const ids = new Set(submissions.map((s) => s.run.id));
  t.equal(ids.size, 1, 'every caller got the same run');
  t.equal(submissions.filter((s) => !s.existing).length, 1, 'exactly one caller created it');
  const [id] = [...ids] as string[];
  const done = await env.engine.wait(id!, 5000);
  t.equal(done.run.state, 'succeeded');
  t.equal(env.world.effects({ tool_id: 'pay.charge', key: 'charge-7' }).length, 1, 'charged once');
  t.throws(() => env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], idempotency_key: 'now-1', created_by: me }, { runNow: true }), { code: 'TYRUM_ERR_CONFLICT' });
  // Read-only, raced in one turn: all but one lose the insert at commit; the tool may have run more than once (it has no effect), the run exists once.
  const reads = await Promise.all(Array.from({ length: 5 }, () => env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'kv.read', args: { key: 'a' } }], idempotency_key: 'now-2', created_by: me }, { runNow: true })));
  t.equal(new Set(reads.map((r) => r.run.id)).size, 1, 'one run for the read-only duplicates');
  t.equal(reads.filter((r) => !r.existing).length, 1);
  t.equal(env.engine.list({ limit: 100 }).filter((r) => r.idempotency_key === 'now-2').length, 1);
});
