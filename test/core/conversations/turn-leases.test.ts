// Agent turns on several gateways sharing one PostgreSQL (migration 20): two turn runners, each in
// a process of its own with its own owner, on one database. A turn running on A is never taken over
// by B while A renews its lease; once A stops renewing (SIGSTOP: a dead or stalled replica), B takes
// it over once, and A, resumed late, cannot store anything (its writes are fenced by owner and
// token). Always on PostgreSQL; skipped with the harness's reason without it.
import t from 'tap';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';
import { until, workerDb, type WorkerDb, type WorkerProcess } from '../../helpers/worker-processes.js';

const FIXTURE = new URL('./fixtures/turn-worker.ts', import.meta.url).pathname;
const LEASE_MS = 3000;
const HEARTBEAT_MS = 300;

const worker = (db: WorkerDb, owner: string): WorkerProcess => db.spawnWorker(FIXTURE, [db.url, owner, String(LEASE_MS), String(HEARTBEAT_MS)]);

const cluster = sharedPostgres(t);

t.test('a turn running on A is not taken over by B while A renews; after A stops renewing B takes it over once and A cannot write', { skip: skipWithoutPostgres() }, async (t) => {
  const db = await workerDb(t, cluster);
  const { store, read } = db;
  const now = Date.now();
  await store.commit(() => {
    const c = store.conversations;
    c.insertConversation({ id: 'conv_1', channel: 'operator', account: 'tok', thread: 'conv_1', title: null, created_by: 'tok', created_at: now, updated_at: now });
    c.insertMessage({ id: 'msg_1', conversation_id: 'conv_1', role: 'user', content: 'hello', tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: '{"source":"operator"}', usage: null, created_at: now });
    c.insertTurn({ id: 'turn_1', conversation_id: 'conv_1', state: 'queued', waiting: null, steps: 0, usage: '{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}', error: null, owner: null, created_at: now, started_at: null, finished_at: null });
  });
  const turn = () => read.conversations.turn('turn_1')!;

  const a = worker(db, 'replica-a');
  await until('A to call the model', () => a.count('called') === 1);
  t.match(turn(), { state: 'running', owner: 'replica-a', fencing_token: 1 }, 'A claimed the turn');

  const b = worker(db, 'replica-b');
  await until('B to start', () => b.count('ready') === 1);
  // B's runner looks for turns at every heartbeat: let it look for more than two lease periods.
  const ticksAtStart = b.count('tick');
  const expiresAtStart = turn().lease_expires_at!;
  await until('B to look for turns over two lease periods while A renews', () => b.count('tick') - ticksAtStart >= Math.ceil((2 * LEASE_MS) / HEARTBEAT_MS) && turn().lease_expires_at! > expiresAtStart + LEASE_MS, 60_000);
  t.equal(b.count('called'), 0, 'B never called the model for the turn A runs');
  t.match(turn(), { state: 'running', owner: 'replica-a', fencing_token: 1 }, 'the turn is still A’s, token unchanged');

  // A stops renewing (a dead or stalled replica): B takes the turn over once the lease expired.
  a.child.kill('SIGSTOP');
  await until('B to take the turn over', () => b.count('called') === 1, 60_000);
  t.match(turn(), { state: 'running', owner: 'replica-b', fencing_token: 2 }, 'B took it over once: token bumped');

  // A resumes late and its model answers: its writes are fenced out.
  a.send('answer');
  a.child.kill('SIGCONT');
  await until('A to drop the turn', () => a.seen.some((o) => o.log === 'warn' && o.turn_id === 'turn_1'), 60_000);
  t.equal(read.conversations.messagesOfTurn('turn_1').filter((m) => m.role === 'assistant').length, 0, 'A stored no answer after losing its lease');
  t.match(turn(), { state: 'running', owner: 'replica-b', fencing_token: 2 });

  b.send('answer');
  await until('the turn to complete', () => turn().state === 'completed');
  const answers = read.conversations.messagesOfTurn('turn_1').filter((m) => m.role === 'assistant');
  t.same(answers.map((m) => m.content), ['answer from replica-b'], 'one answer, stored by B');
  t.equal(b.count('called'), 1, 'B called the model once');
  t.equal(a.count('called'), 1, 'A never picked the turn up again');
  t.match(turn(), { owner: 'replica-b', fencing_token: 2, steps: 1 });
  const started = read.outbox.after(0, 1000).filter((e) => e.type === 'turn.started');
  t.equal(started.length, 2, 'turn.started: A’s claim and B’s take-over');

  for (const w of [a, b]) w.send('stop');
  await until('both workers to exit', () => a.child.exitCode !== null && b.child.exitCode !== null);
});
