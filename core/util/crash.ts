/**
 * Crash harness, TEST ONLY. Named points in the engine and the store's group commit where the process can kill itself with
 * SIGKILL, so a test can check that a restart keeps every invariant (TESTPLAN A1/A2).
 *
 * Off unless the environment variable TYRUM_TEST_CRASH_AT names a point: `step_started`
 * crashes at the first time that point is reached, `step_started:3` at the third. Nothing in
 * a production configuration sets it; `doctor` may warn when it is set.
 */
export const CRASH_POINTS = [
  /** The run and its steps are committed; the caller has not been answered yet. */
  'accepted',
  /** A worker committed its lease on a run. */
  'lease_taken',
  /** The attempt is committed as started; the tool has not been called. */
  'step_started',
  /** The tool returned; its result is not saved yet. */
  'tool_returned',
  /** The result (and its outbox event) is committed; listeners have not been told. */
  'result_saved',
  /** The run is committed as paused on a pending approval. */
  'waiting_approval',
  /** A group commit's units are all written; its COMMIT has not been issued (nothing is durable). */
  'group_commit_before',
  /** A group is COMMITted (in the write-ahead log, visible to readers) and its log sync is starting: not yet durable, nobody told. */
  'group_commit_written',
  /** A group commit is durable; no unit's caller has been told, no event delivered. */
  'group_commit_after',
  /** A schedule's claim transaction has advanced the tick and started its run or message; nothing of it is committed. */
  'schedule_fired',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

export const CRASH_ENV = 'TYRUM_TEST_CRASH_AT';

/**
 * The crash function the engine uses by default: a no-op unless `TYRUM_TEST_CRASH_AT` is set.
 * A malformed value throws at construction, so a misspelt test never passes by not crashing.
 */
export function crashPointFromEnv(env: NodeJS.ProcessEnv = process.env): (name: CrashPoint) => void {
  const spec = env[CRASH_ENV];
  if (spec === undefined || spec === '') return () => undefined;
  const m = /^([a-z_]+)(?::([1-9][0-9]*))?$/.exec(spec);
  const point = m?.[1];
  if (!m || point === undefined || !(CRASH_POINTS as readonly string[]).includes(point)) {
    throw new Error(`${CRASH_ENV}=${spec}: expected one of ${CRASH_POINTS.join(', ')}, optionally followed by :<hit number>`);
  }
  const at = Number(m[2] ?? '1');
  let hits = 0;
  return (name) => {
    if (name !== point) return;
    hits += 1;
    if (hits === at) killNow();
  };
}

/** SIGKILL ourselves and make sure no further line of JavaScript runs while the signal lands. */
function killNow(): never {
  process.kill(process.pid, 'SIGKILL');
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
}
