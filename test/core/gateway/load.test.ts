// TESTPLAN I2: sustained tool calls through a read-only plugin tool from many concurrent
// WebSocket connections, while another process commits to the same database. The CI variant of
// `npm run soak` (bench/soak.ts): about 2,000 calls, with a generous deadline as a hang guard.
import t from 'tap';
import { soak } from '../../../bench/soak.js';

t.test('I2: 2,000 calls from 16 connections: each answered once, one run and one step each, no busy error, steady progress', async (t) => {
  const samples: number[] = [];
  const r = await soak({ calls: 2000, connections: 16, inflight: 4, tokens: 4, deadlineMs: 90_000, onProgress: (n) => samples.push(n) });
  t.comment(`${r.calls} calls in ${(r.wallMs / 1000).toFixed(1)} s (${r.callsPerSecond.toFixed(0)} calls/s); writer commits ${r.writerCommits}; longest stretch without an answer ${r.maxStallMs.toFixed(0)} ms`);
  t.equal(r.answered, 2000, 'every call answered');
  t.equal(r.unanswered, 0);
  t.equal(r.duplicateAnswers, 0, 'no call answered twice');
  t.same(r.failures, {}, 'no call failed (no rate_limited, no internal error)');
  t.equal(r.succeeded, 2000, 'every answer is a succeeded run with the right output');
  t.equal(r.busySurfaced, 0, 'no database busy error reached a caller or a run');
  t.equal(r.runs, 2000, 'the store holds exactly one run per call');
  t.equal(r.badRuns, 0, 'each run has one succeeded step with one succeeded attempt');
  t.equal(r.duplicateRunIds, 0, 'no run id answered twice');
  t.equal(r.unmatchedRuns, 0, 'answered runs and stored runs are the same set');
  t.ok(r.writerCommits > 0, 'the other process committed while the load ran');
  t.same(r.writerErrors, [], 'and never failed');
  t.ok(r.maxStallMs < 10_000, `progress throughout: longest stretch without an answer ${r.maxStallMs.toFixed(0)} ms (guard 10 s)`);
  t.ok(samples.length === 0 || samples.every((n, i) => i === 0 || n >= samples[i - 1]!), 'the answered count only grows');
});
