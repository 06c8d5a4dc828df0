import t from 'tap';
import { TyrumError } from '../../../core/errors/index.js';
import { backoffMs, checkPostcondition, classifyFailure, crashPointFromEnv, resolvePointer, validatePostcondition, requestHash, FAILURE_CLASSES, type FailureAction } from '../../../core/execution/index.js';
import { SANDBOX_ERROR_CODES, sandboxError, type SandboxFailureReason } from '../../../sandbox/errors.js';

t.test('JSON pointers resolve own properties and array indexes only', async (t) => {
  const doc = { a: { 'b/c': [10, { '~x': true }] }, list: [] as unknown[] };
  t.same(resolvePointer(doc, ''), { found: true, value: doc });
  t.same(resolvePointer(doc, '/a/b~1c/0'), { found: true, value: 10 });
  t.same(resolvePointer(doc, '/a/b~1c/1/~0x'), { found: true, value: true });
  t.same(resolvePointer(doc, '/a/b~1c/2'), { found: false });
  t.same(resolvePointer(doc, '/a/b~1c/01'), { found: false }, 'no leading zeros');
  t.same(resolvePointer(doc, '/a/constructor'), { found: false }, 'never the prototype chain');
  t.same(resolvePointer(doc, '/__proto__'), { found: false });
  t.same(resolvePointer(doc, '/list/-'), { found: false });
  t.same(resolvePointer(5, '/x'), { found: false });
});

t.test('postconditions: exists, equals (canonical), matches; anything unverifiable fails', async (t) => {
  const out = { status: 'ok', n: 1, obj: { b: 2, a: 1 }, id: 'abc-123', big: 'x'.repeat(70_000) };
  t.equal(checkPostcondition({ path: '/status', exists: true }, out).ok, true);
  t.equal(checkPostcondition({ path: '/nope', exists: true }, out).ok, false);
  t.equal(checkPostcondition({ path: '/obj', equals: { a: 1, b: 2 } }, out).ok, true, 'key order does not matter');
  t.equal(checkPostcondition({ path: '/n', equals: '1' }, out).ok, false, 'no coercion');
  t.equal(checkPostcondition({ path: '/id', matches: '^abc-\\d+$' }, out).ok, true);
  t.equal(checkPostcondition({ path: '/n', matches: '1' }, out).ok, false, 'matches needs a string');
  t.equal(checkPostcondition({ path: '/big', matches: 'x' }, out).ok, false, 'oversized strings are not checked');
  t.equal(checkPostcondition({ path: '/missing', equals: null }, out).ok, false, 'a missing value is not null');
});

t.test('malformed postconditions are rejected with their path', async (t) => {
  const bad = [null, [], {}, { path: 'x', exists: true }, { path: '/x' }, { path: '/x', exists: false }, { path: '/x', exists: true, equals: 1 }, { path: '/x', matches: '(' }, { path: '/x', matches: 'a'.repeat(300) }, { path: '/x~2', exists: true }, { path: '/x', exists: true, extra: 1 }];
  for (const pc of bad) t.throws(() => validatePostcondition(pc, 'steps/0/postcondition'), { code: 'TYRUM_ERR_INVALID_REQUEST', details: { path: 'steps/0/postcondition' } }, JSON.stringify(pc));
  t.ok(validatePostcondition({ path: '', equals: { a: [1] } }, 'p'));
});

t.test('failures: cut-off calls retry only when idempotent, otherwise the outcome is unknown', async (t) => {
  const crash = new TyrumError('TYRUM_ERR_SANDBOX_CRASH', 'died');
  const lost = new TyrumError('TYRUM_ERR_MCP_CONNECTION_LOST', 'gone');
  t.equal(classifyFailure(crash, true), 'retry', 'a restarted worker may well succeed');
  t.equal(classifyFailure(crash, false), 'outcome_unknown');
  t.equal(classifyFailure(lost, true), 'retry');
  t.equal(classifyFailure(lost, false), 'outcome_unknown');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_RATE_LIMITED', 'later'), false), 'retry');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_SANDBOX_HOST', 'x'), true), 'fail', 'a host failure is retried only when marked transient');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_SANDBOX_HOST', 'x', { retryable: true }), true), 'retry');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_SANDBOX_HOST', 'x', { retryable: true }), false), 'fail');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_INTERNAL', 'x', { retryable: true }), true), 'retry');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', 'x'), true), 'fail');
  t.equal(classifyFailure(new Error('plain'), true), 'fail');
});

t.test('budget exhaustion is deterministic: never retried; a time budget cut-off of a non-idempotent call is outcome_unknown', async (t) => {
  // Every way the sandbox reports a failure, as the pool and the worker build it.
  const expected: Record<SandboxFailureReason, [idempotent: FailureAction, other: FailureAction]> = {
    timeout: ['fail', 'outcome_unknown'],
    trap: ['fail', 'fail'],
    crash: ['retry', 'outcome_unknown'],
    plugin_error: ['fail', 'fail'],
    output_too_large: ['fail', 'fail'],
    input_too_large: ['fail', 'fail'],
    budget_exceeded: ['fail', 'fail'],
    capability_denied: ['fail', 'fail'],
    host_error: ['fail', 'fail'],
    module_rejected: ['fail', 'fail'],
    digest_mismatch: ['fail', 'fail'],
    instantiate_failed: ['fail', 'fail'],
    not_loaded: ['fail', 'fail'],
    closed: ['fail', 'fail'],
    invalid_argument: ['fail', 'fail'],
  };
  t.same(Object.keys(expected).sort(), Object.keys(SANDBOX_ERROR_CODES).sort(), 'the table covers every sandbox failure reason');
  for (const [reason, [idem, other]] of Object.entries(expected) as Array<[SandboxFailureReason, [FailureAction, FailureAction]]>) {
    const e = sandboxError(reason, reason);
    t.equal(classifyFailure(e, true), idem, `${reason} (${e.code}), idempotent`);
    t.equal(classifyFailure(e, false), other, `${reason} (${e.code}), not idempotent`);
  }
  // Each named budget (sandbox/worker.ts, sandbox/pool.ts, core/egress), and the time budgets.
  const budgets = ['host_calls', 'kernel_blocks', 'alloc_bytes', 'var_bytes', 'egress_bytes', 'egress_request_bytes', 'kv_value', 'input', 'config'];
  for (const budget of budgets) {
    const e = sandboxError('budget_exceeded', `${budget} ran out`, { budget });
    t.equal(classifyFailure(e, true), 'fail', `budget ${budget}`);
    t.equal(classifyFailure(new TyrumError(e.code, e.message, { ...e.details, retryable: true }), true), 'fail', `budget ${budget}: a retryable mark does not make a budget transient`);
  }
  const timeouts = [sandboxError('timeout', 'spun', { limit_ms: 2000 }), new TyrumError('TYRUM_ERR_TIMEOUT', 'step timeout'), new TyrumError('TYRUM_ERR_TIMEOUT', 'MCP: no result within 300 ms', { retryable: true })];
  for (const e of timeouts) {
    t.equal(classifyFailure(e, true), 'fail', `${e.code}: a time budget is not retried`);
    t.equal(classifyFailure(e, false), 'outcome_unknown', `${e.code}: a cut-off effect is unknown`);
  }
  t.equal(classifyFailure(sandboxError('trap', 'plugin trapped: memory access out of bounds'), true), 'fail', 'memory exhaustion traps: deterministic');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_LEASE_LOST', 'taken over', { retryable: true }), true), 'fail', 'a lost lease is never retried by the worker that lost it');
  const retryable = Object.entries(FAILURE_CLASSES).filter(([, c]) => c.retry !== 'never').map(([code]) => code).sort();
  t.same(retryable, ['TYRUM_ERR_MCP_CONNECTION_LOST', 'TYRUM_ERR_NODE_CAPABILITY_FAILED', 'TYRUM_ERR_NODE_DISCONNECTED', 'TYRUM_ERR_NODE_UNAVAILABLE', 'TYRUM_ERR_RATE_LIMITED', 'TYRUM_ERR_SANDBOX_CRASH', 'TYRUM_ERR_SANDBOX_HOST'].sort(), 'the codes that can succeed on retry');
  // Nodes (J3): a connection lost mid-dispatch may have acted; one that was never reached did not.
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', 'gone'), false), 'outcome_unknown', 'a node lost mid-dispatch: unknown, never silently re-sent');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', 'gone'), true), 'retry', 'an idempotent capability is retried');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_NODE_UNAVAILABLE', 'offline'), false), 'fail', 'nothing sent: a plain failure');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_NODE_CAPABILITY_FAILED', 'no', { retryable: true }), true), 'retry', 'a failure the node marks retryable');
});

t.test('backoff doubles per attempt, is capped, and jitters by at most 10%', async (t) => {
  const o = { baseMs: 100, maxMs: 1000 };
  t.same([1, 2, 3, 4, 5].map((n) => backoffMs(n, o, () => 0)), [100, 200, 400, 800, 1000]);
  t.equal(backoffMs(2, o, () => 1), 220);
  t.equal(backoffMs(9, o, () => 1), 1000);
});

t.test('the crash harness is off unless TYRUM_TEST_CRASH_AT names a point, and refuses typos', async (t) => {
  t.doesNotThrow(() => crashPointFromEnv({})('step_started'));
  t.doesNotThrow(() => crashPointFromEnv({ TYRUM_TEST_CRASH_AT: 'step_started:2' })('accepted'), 'other points do nothing');
  t.throws(() => crashPointFromEnv({ TYRUM_TEST_CRASH_AT: 'step_startd' }), /expected one of/);
  t.throws(() => crashPointFromEnv({ TYRUM_TEST_CRASH_AT: 'step_started:0' }), /expected one of/);
});

t.test('the request hash ignores key order and the creator but not the payload', async (t) => {
  const a = requestHash({ kind: 'tool', steps: [{ tool_id: 'x', args: { a: 1, b: 2 } }], created_by: 'u1' });
  t.equal(a, requestHash({ kind: 'tool', steps: [{ args: { b: 2, a: 1 }, tool_id: 'x' }], created_by: 'u2' }));
  t.not(a, requestHash({ kind: 'tool', steps: [{ tool_id: 'x', args: { a: 1, b: 3 } }], created_by: 'u1' }));
  t.not(a, requestHash({ kind: 'tool', steps: [{ tool_id: 'x', args: { a: 1, b: 2 }, max_attempts: 2 }], created_by: 'u1' }));
});
