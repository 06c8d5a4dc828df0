import t from 'tap';
import { TyrumError } from '../../../core/errors/index.js';
import { backoffMs, checkPostcondition, classifyFailure, crashPointFromEnv, resolvePointer, validatePostcondition, requestHash } from '../../../core/execution/index.js';

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
  const timeout = new TyrumError('TYRUM_ERR_TIMEOUT', 'slow');
  const crash = new TyrumError('TYRUM_ERR_SANDBOX_CRASH', 'died');
  t.equal(classifyFailure(timeout, true), 'retry');
  t.equal(classifyFailure(timeout, false), 'outcome_unknown');
  t.equal(classifyFailure(crash, false), 'outcome_unknown');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_RATE_LIMITED', 'later'), false), 'retry');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_SANDBOX_HOST', 'x'), false), 'fail');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_INTERNAL', 'x', { retryable: true }), true), 'retry');
  t.equal(classifyFailure(new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', 'x'), true), 'fail');
  t.equal(classifyFailure(new Error('plain'), true), 'fail');
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
