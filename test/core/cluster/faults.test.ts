// Issue 16's failure matrix on real replica processes (two `tyrum start` on one PostgreSQL), with
// a step that is slow while it runs: the MCP fixture's `slow` tool, which records every execution
// (tag, its pid, and its parent's: the replica that ran it) in a file before it sleeps.
//
// - A slow replica past its lease (SIGSTOP): the other takes the run over and finishes it; the
//   stopped one, resumed, has its late write fenced (TYRUM_ERR_LEASE_LOST: "lease lost; late
//   write rejected" in its log): one result, the new owner's. The tool is approved read-only
//   (idempotent), so the new owner runs it again: the harm a late write would do is to overwrite
//   that result with the old owner's.
// - kill -9 while a non-idempotent step runs (TESTPLAN M1): the other replica takes the run over
//   and, as the engine's contract says for a cut step whose outcome is unknown, does not run it
//   again: the run pauses with the step `outcome_unknown` for an operator, who skips it; the tool
//   ran once.
//
// The engine's lease is 30 s (not configurable), so each case waits it out. A stopped replica may
// hold an open transaction (and the log lock): PostgreSQL ends that session after the writer's
// idle_in_transaction_session_timeout (10 s), which the other replica's takeover may wait for.
import t, { type Test } from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';
import type { RawConn } from '../../helpers/gateway.js';
import { clientOf, exited, replicas, result, type Invoke, type Replica } from './helpers.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
t.setTimeout(600_000);

const FLAKY = new URL('../../fixtures/mcp/flaky-server.mjs', import.meta.url).pathname;
const TOOL = 'mcp.flaky.slow';

interface RunView {
  run: { state: string; pause_reason: string | null; lease: { owner: string; fencing_token: number } | null };
  steps: Array<{ state: string; result: unknown; attempts: Array<{ n: number; owner: string; fencing_token: number; state: string }> }>;
}

/** The executions `slow` recorded: [tag, pid, ppid]. */
function effects(file: string): Array<[string, number, number]> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [tag, pid, ppid] = l.split(' ');
      return [tag!, Number(pid), Number(ppid)];
    });
}

async function until<T>(what: string, ms: number, fn: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const runOf = async (conn: RawConn, runId: string): Promise<RunView> => result<RunView>(await conn.request('run.get', { run_id: runId }, 10_000));

/** Two replicas with the flaky MCP server approved (`slow` read-only when `readOnly`); the effects file. */
async function setup(t: Test, readOnly: boolean): Promise<{ a: Replica; b: Replica; token: string; file: string }> {
  const file = join(t.testdir(), 'effects.log');
  const approve = readOnly ? ['mcp', 'approve', 'flaky', '--read-only', 'slow,ping'] : ['mcp', 'approve', 'flaky', '--read-only', 'ping'];
  const { all, token } = await replicas(t, cluster, 2, { cli: [['mcp', 'add', 'flaky', '--', process.execPath, FLAKY, '--effects', file], approve], logLevel: 'warn' });
  return { a: all[0]!, b: all[1]!, token, file };
}

/** Submits `slow` on `conn` (an approval "always" first when it is state-changing); waits until it runs; the replica running it. */
async function startSlow(t: Test, conn: RawConn, file: string, replicasByPid: Map<number, Replica>, stateChanging: boolean): Promise<{ runId: string; runner: Replica }> {
  if (stateChanging) {
    const warm = result<Invoke>(await conn.request('tool.invoke', { tool_id: TOOL, args: { ms: 0, tag: 'warm' }, wait_ms: 3000 }, 10_000));
    t.equal(warm.state, 'paused', 'a state-changing MCP tool asks for approval');
    result(await conn.request('approval.resolve', { approval_id: warm.approval_id, decision: 'approved', mode: 'always', reason: 'for the test' }));
    await until('the warm-up run', 60_000, async () => ((await runOf(conn, warm.run_id)).run.state === 'succeeded' ? true : undefined));
  }
  const before = effects(file).length;
  const call = result<Invoke>(await conn.request('tool.invoke', { tool_id: TOOL, args: { ms: 8_000, tag: 'slow' }, wait_ms: 0 }, 10_000));
  t.equal(call.approval_id, null, 'no approval pending for the slow call');
  const started = await until('the slow step to start', 60_000, () => (effects(file).length > before ? effects(file)[before] : undefined));
  const runner = replicasByPid.get(started[2]);
  if (runner === undefined) throw new Error(`the slow tool ran under pid ${started[2]}, not a replica's MCP server`);
  return { runId: call.run_id, runner };
}

t.test('a replica stopped past its lease mid-step: the other finishes the run, the stopped one\'s late write is fenced, one result', { skip }, async (t) => {
  const { a, b, token, file } = await setup(t, true);
  const byPid = new Map([a, b].map((r) => [r.child.pid!, r]));
  const onA = await clientOf(t, a, token);
  const { runId, runner } = await startSlow(t, onA, file, byPid, false);
  const other = runner === a ? b : a;
  // Connected before the stop: a replica stopped inside a write transaction holds the cluster's log
  // lock until PostgreSQL ends its session (idle_in_transaction_session_timeout, 10 s), so a
  // handshake (it writes) on the other replica could wait past the request timeout meanwhile.
  const onOther = await clientOf(t, other, token);
  runner.child.kill('SIGSTOP');
  t.teardown(() => void runner.child.kill('SIGCONT'));

  const done = await until('the other replica to finish the run', 150_000, async () => {
    const v = await runOf(onOther, runId);
    return v.run.state === 'succeeded' || v.run.state === 'failed' ? v : undefined;
  });
  t.equal(done.run.state, 'succeeded', 'the other replica took the run over and finished it');
  const ran = effects(file).filter((e) => e[0] === 'slow');
  t.equal(ran.length, 2, 'the idempotent step ran again on the new owner');
  t.equal(byPid.get(ran[1]![2]), other, 'the second execution is the other replica\'s');
  t.match(done.steps[0]?.attempts, [
    { n: 1, fencing_token: 1, state: 'interrupted' },
    { n: 2, fencing_token: 2, state: 'succeeded' },
  ]);
  const winner = done.steps[0]?.result;
  t.match(JSON.stringify(winner), new RegExp(`slept slow ${ran[1]![1]}`), "the result is the new owner's call");

  runner.child.kill('SIGCONT');
  // The stopped replica's MCP server answered while it was stopped: it reads the answer (or
  // notices at its next renewal that the lease is gone) and its write is refused.
  const fencedLine = (): Record<string, unknown> | undefined =>
    runner
      .out()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((o) => o.msg === 'lease lost; late write rejected' && o.run_id === runId);
  const line = await until("the resumed replica's fenced write", 90_000, fencedLine).catch((e: Error) => {
    throw new Error(`${e.message}; its log: ${runner.out().slice(-4000)}`);
  });
  t.match(line, { fencing_token: 1 }, 'it wrote under its old token 1 (TYRUM_ERR_LEASE_LOST)');
  const after = await runOf(onOther, runId);
  t.equal(after.run.state, 'succeeded');
  t.same(after.steps[0]?.result, winner, 'the result is unchanged: the late write matched nothing');
  t.equal(after.steps[0]?.attempts.length, 2, 'no third attempt');
  const onA2 = await clientOf(t, runner, token);
  t.equal((await runOf(onA2, runId)).run.state, 'succeeded', 'the resumed replica serves the same run state');
  const verify = result<{ ok: boolean }>(await onOther.request('audit.verify', {}, 30_000));
  t.equal(verify.ok, true, 'the audit chain both replicas appended to verifies');
});

t.test('kill -9 while a non-idempotent step runs: the other replica takes the run over and asks the operator, the step is not run again (M1)', { skip }, async (t) => {
  const { a, b, token, file } = await setup(t, false);
  const byPid = new Map([a, b].map((r) => [r.child.pid!, r]));
  const onA = await clientOf(t, a, token);
  const { runId, runner } = await startSlow(t, onA, file, byPid, true);
  const other = runner === a ? b : a;
  runner.child.kill('SIGKILL');
  await exited(runner);
  const onOther = await clientOf(t, other, token);

  const paused = await until('the other replica to take the run over', 150_000, async () => {
    const v = await runOf(onOther, runId);
    return v.run.state !== 'running' && v.run.state !== 'queued' ? v : undefined;
  });
  t.match(paused.run, { state: 'paused', pause_reason: 'outcome_unknown' }, 'paused for an operator: the cut step may have had its effect');
  t.equal(paused.steps[0]?.state, 'outcome_unknown');
  t.match(paused.steps[0]?.attempts, [{ n: 1, fencing_token: 1, state: 'interrupted' }], 'the cut attempt, and no second one');
  t.equal(effects(file).filter((e) => e[0] === 'slow').length, 1, 'the step ran once: not re-run blindly');

  const resolved = result<{ run: { state: string } }>(await onOther.request('run.resolve', { run_id: runId, step_idx: 0, action: 'skip' }, 10_000));
  t.not(resolved.run.state, 'paused', 'the operator skipped it');
  const done = await until('the run to end', 60_000, async () => {
    const v = await runOf(onOther, runId);
    return v.run.state === 'succeeded' || v.run.state === 'failed' ? v : undefined;
  });
  t.equal(done.run.state, 'succeeded');
  t.same(done.steps.map((s) => s.state), ['skipped']);
  t.equal(effects(file).filter((e) => e[0] === 'slow').length, 1, 'still one execution');
  const verify = result<{ ok: boolean }>(await onOther.request('audit.verify', {}, 30_000));
  t.equal(verify.ok, true, 'the audit chain verifies after the kill');
});
