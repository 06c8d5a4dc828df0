// Work that outlives a call (timers, immediates, after-commit callbacks, runs the engine launches
// later) must not keep naming that call: its log fields and incoming traceparent stay with it.
import t from 'tap';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withLogFields, logFields, withIncomingTrace, incomingTrace, detached, type CallObserver } from '../../../core/telemetry/index.js';
import { openStore } from '../../../core/store/index.js';
import { AuditLog } from '../../../core/audit/index.js';
import { makeKeys } from '../audit/fixtures/index.js';
import { setup } from '../execution/fixtures/world.js';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** What a callback saw of the current scope. */
const seen = (): { fields: Record<string, unknown>; trace: string | null } => ({ fields: logFields(), trace: incomingTrace() });

/** Runs `fn` as if inside a call handled for a request that sent TP. */
const inCall = <T>(fn: () => T): T => withIncomingTrace(TP, () => withLogFields({ run_id: 'run_caller', step: 0, attempt: 1 }, fn));

t.test('a timer, an immediate or an interval armed through detached() outlives the call that armed it without carrying its fields or traceparent', async (t) => {
  const got: Array<[string, ReturnType<typeof seen>]> = [];
  let plain: ReturnType<typeof seen> | null = null;
  inCall(() => {
    setTimeout(() => (plain = seen()), 5);
    detached(() => setTimeout(() => got.push(['timeout', seen()]), 5));
    detached(() => setImmediate(() => got.push(['immediate', seen()])));
    const i = detached(() => setInterval(() => (got.push(['interval', seen()]), clearInterval(i)), 5));
    detached(() => Promise.resolve().then(() => got.push(['promise', seen()])));
    t.same(seen(), { fields: { run_id: 'run_caller', step: 0, attempt: 1 }, trace: TP }, 'the call itself keeps its scope after detached() returns');
  });
  await sleep(30);
  t.same(plain, { fields: { run_id: 'run_caller', step: 0, attempt: 1 }, trace: TP }, 'a plain timer does carry the scope (the leak detached() exists for)');
  t.same(got.map(([k]) => k).sort(), ['immediate', 'interval', 'promise', 'timeout']);
  for (const [k, s] of got) t.same(s, { fields: {}, trace: null }, `${k}: no fields, no traceparent`);
  t.equal(detached(() => 42), 42, 'outside any scope it just calls fn');
});

t.test("the store's after-commit callbacks run in no caller's scope, even when that caller opened the group", async (t) => {
  const store = openStore(join(t.testdir(), 'tyrum.db'));
  t.teardown(() => store.close());
  const after: Array<ReturnType<typeof seen>> = [];
  await inCall(() =>
    store.commit(() => {
      store.afterCommit(() => after.push(seen()));
    }),
  );
  t.same(after, [{ fields: {}, trace: null }]);
});

t.test("the audit log's checkpoint timer, armed by a call's commit, signs in no call's scope", async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'tyrum.db'));
  t.teardown(() => store.close());
  const keys = makeKeys();
  const signed: Array<ReturnType<typeof seen>> = [];
  const signer = { keyId: keys.signer.keyId, sign: (d: Buffer) => (signed.push(seen()), keys.signer.sign(d)) };
  const log = new AuditLog({ store, signer, verifier: keys.verifier, checkpointPath: join(dir, 'audit.checkpoint.json'), checkpointIntervalMs: 20 });
  t.teardown(() => log.close());
  await log.append('test.event', { kind: 'cli' }, { i: 1 }); // a log's first entry is checkpointed at once
  signed.length = 0;
  await inCall(() => log.append('test.event', { kind: 'cli' }, { i: 2 }));
  await sleep(100);
  t.ok(signed.length > 0, 'the timer signed a checkpoint');
  t.same(signed, signed.map(() => ({ fields: {}, trace: null })), 'without the fields or traceparent of the call that armed it');
});

t.test('a run the engine claims later runs with its own fields and no inherited traceparent, whoever kicked the engine', async (t) => {
  const begun: Array<string | null> = [];
  const calls: CallObserver = {
    begin: (info, traceparent) => {
      begun.push(traceparent);
      return { fields: { run_id: info.run_id, step: info.step }, stage() {}, attempt() {}, policy() {}, end() {} };
    },
  };
  // A slow poll: the run is claimed by the kick its submission makes.
  const env = setup(t, { calls, pollMs: 60_000 });
  const during: Array<ReturnType<typeof seen>> = [];
  env.world.beforeCall = async () => void during.push(seen());
  const { run } = await inCall(() => env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: 'tok_alice' }));
  t.equal((await env.engine.wait(run.id, 5000)).run.state, 'succeeded');
  t.same(begun, [null], 'the call has no parent: the run was not taken at submission');
  t.same(during, [{ fields: { run_id: run.id, step: 0 }, trace: null }], "the tool ran with the run's own fields, without the submitting request's traceparent");
});

t.test('a run taken at submission keeps the traceparent it was submitted under, carried on its claim', async (t) => {
  const begun: Array<string | null> = [];
  const calls: CallObserver = {
    begin: (info, traceparent) => {
      begun.push(traceparent);
      return { fields: { run_id: info.run_id, step: info.step }, stage() {}, attempt() {}, policy() {}, end() {} };
    },
  };
  const env = setup(t, { calls, pollMs: 60_000 });
  const during: Array<ReturnType<typeof seen>> = [];
  env.world.beforeCall = async () => void during.push(seen());
  const { run } = await inCall(() => env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: 'tok_alice' }, { runNow: true }));
  t.equal((await env.engine.wait(run.id, 5000)).run.state, 'succeeded');
  t.same(begun, [TP], 'the call is a child of the request');
  t.same(during, [{ fields: { run_id: run.id, step: 0 }, trace: null }], 'and nothing else in the run reads the request as its own');
});
