// Several gateway replicas (real `tyrum start` processes, each its own home with the same gateway
// and secret key files) on one PostgreSQL database: the outbox is the backplane (a client on
// replica B sees every event of a run started on A, and a client that reconnects elsewhere
// catches up from its cursor), an approval resolved on B resumes a run held by A, and a run
// whose replica is killed with SIGKILL is finished by another, exactly once.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, removeHome, type RawConn } from '../../helpers/gateway.js';
import { runCli } from '../../helpers/cli.js';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
// Each test starts real gateway processes and CLI commands: well over the default file timeout on a loaded machine.
t.setTimeout(480_000);
const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const BIN = join(import.meta.dirname, '../../../bin/tyrum.js');
// The CLI children inherit it: the store section names PostgreSQL.
process.env.TYRUM_EXPERIMENTAL_POSTGRES = '1';

type Invoke = { run_id: string; state: string; approval_id: string | null };
const result = <T>(r: Record<string, unknown>): T => {
  if (r.ok !== true) throw new Error(`request failed: ${JSON.stringify(r.error ?? r)}`);
  return r.result as T;
};

interface Replica {
  home: string;
  child: ChildProcess;
  port: number;
  token: string | null;
  err: () => string;
}

/** Starts `tyrum start` on `home`; resolves once it listens. The test kills it at the end. */
async function startReplica(t: Test, home: string): Promise<Replica> {
  const child = spawn(process.execPath, [BIN, 'start', '--home', home, '--port', '0', '--log-level', 'silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 90_000;
  while (!/listening on ws:\/\/127\.0\.0\.1:\d+\/ws/.test(err) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  const port = Number(/127\.0\.0\.1:(\d+)\/ws/.exec(err)?.[1]);
  if (!Number.isInteger(port)) throw new Error(`replica on ${home} did not start: ${err.slice(0, 3000)}`);
  return { home, child, port, token: /tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(err)?.[0] ?? null, err: () => err };
}

/** A new home on `url`: the first one creates the keys; the others get copies (keys, audit checkpoint, plugin files). */
function newHome(t: Test, url: string, from?: string): string {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-replica-'));
  t.teardown(() => removeHome(home));
  writeFileSync(join(home, 'config.json'), JSON.stringify({ store: { kind: 'postgres', url } }));
  if (from !== undefined) {
    // The audit checkpoint too: a home with none, on a log with entries, is refused as truncated.
    for (const f of ['gateway.key', 'secrets.key', 'audit.checkpoint.json']) if (existsSync(join(from, f))) copyFileSync(join(from, f), join(home, f));
    if (existsSync(join(from, 'plugins'))) {
      mkdirSync(join(home, 'plugins'), { recursive: true });
      cpSync(join(from, 'plugins'), join(home, 'plugins'), { recursive: true });
    }
  }
  return home;
}

async function clientOf(t: Test, r: Replica, token: string): Promise<RawConn> {
  const { conn } = await connect({ port: r.port }, { token });
  t.teardown(() => conn.ws.close());
  return conn;
}

/** Until an event frame matching `pred` arrived on `conn`. */
function eventOn(conn: RawConn, pred: (f: Record<string, unknown>) => boolean, what: string, ms = 15_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const look = (): void => {
      const f = conn.frames.find((x) => x.event_id !== undefined && pred(x));
      if (f !== undefined) return resolve(f);
      if (Date.now() > deadline) return reject(new Error(`no ${what} on the connection (frames: ${JSON.stringify(conn.frames.map((x) => x.type))})`));
      setTimeout(look, 20);
    };
    look();
  });
}

const payloadOf = (f: Record<string, unknown>): Record<string, unknown> => f.payload as Record<string, unknown>;

async function waitState(conn: RawConn, runId: string, done: (s: string) => boolean): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = result<{ run: { state: string } }>(await conn.request('run.get', { run_id: runId })).run.state;
    if (done(s) || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Two replicas on one fresh database, the notes plugin enabled; A made the keys and the token. */
async function twoReplicas(t: Test): Promise<{ url: string; a: Replica; b: Replica; token: string }> {
  const url = (await cluster()).database();
  const homeA = newHome(t, url);
  const a = await startReplica(t, homeA);
  const token = a.token;
  if (token === null) throw new Error(`no bootstrap token: ${a.err().slice(0, 2000)}`);
  for (const argv of [['plugin', 'install', NOTES], ['plugin', 'grant', 'notes', '--all-requested', '--accept-risk', 'state_changing,storage'], ['plugin', 'enable', 'notes']]) {
    const r = await runCli([...argv, '--home', homeA]);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.err}`);
  }
  const b = await startReplica(t, newHome(t, url, homeA));
  t.equal(b.token, null, 'the second replica finds the token the first one minted (no second bootstrap token)');
  return { url, a, b, token };
}

t.test('a client on replica B sees every event of a run started on A; approved on B, the run completes once; a client reconnecting to B catches up from its cursor (M3)', { skip }, async (t) => {
  const { a, b, token } = await twoReplicas(t);
  const onA = await clientOf(t, a, token);
  const onB = await clientOf(t, b, token);
  const before = result<{ next_after: number }>(await onA.request('event.list', { after: 0, limit: 1000 })).next_after;
  // Paused for approval on A (a state_changing tool).
  const call = result<Invoke>(await onA.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'across', body: 'replicas' }, wait_ms: 3000 }, 10_000));
  t.equal(call.state, 'paused');
  const approvalOnB = await eventOn(onB, (f) => f.type === 'approval.updated' && payloadOf(f).approval_id === call.approval_id, 'approval.updated for the run started on A');
  t.equal(payloadOf(approvalOnB).state, 'pending', 'B pushed the approval A created');
  await eventOn(onB, (f) => f.type === 'run.updated' && payloadOf(f).run_id === call.run_id, 'run.updated of the run started on A');

  // Resolved on B; the run is held (paused) by A's database rows, and whichever replica claims it finishes it.
  result(await onB.request('approval.resolve', { approval_id: call.approval_id, decision: 'approved', reason: 'from B' }));
  t.equal(await waitState(onA, call.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded', 'the approval given on B resumed the run');
  await eventOn(onB, (f) => f.type === 'run.updated' && payloadOf(f).run_id === call.run_id && payloadOf(f).state === 'succeeded', 'the run succeeding, on B');
  await eventOn(onA, (f) => f.type === 'approval.updated' && payloadOf(f).approval_id === call.approval_id && payloadOf(f).state === 'approved', 'the approval resolved on B, on A');
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await onB.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} }, 10_000)).output.notes;
  t.same(notes.map((n) => n.title), ['across'], 'the note was added exactly once');

  // Every durable event A's client saw live since `before`, B's outbox read gives too, in order,
  // and a client that reconnects to B with A's cursor gets exactly what came after it.
  const listed = result<{ events: Array<{ cursor: number; event_id: string; type: string }> }>(await onB.request('event.list', { after: before, limit: 1000 })).events;
  const ofRun = listed.filter((e) => e.type === 'run.updated' || e.type === 'step.updated' || e.type === 'approval.updated');
  t.ok(ofRun.length >= 4, `the run's events are in the shared outbox (${ofRun.length})`);
  const cursors = listed.map((e) => e.cursor);
  t.same(cursors, [...cursors].sort((x, y) => x - y), 'in cursor order');
  const seenOnB = new Set(onB.frames.filter((f) => f.event_id !== undefined).map((f) => f.event_id));
  for (const e of ofRun) t.ok(seenOnB.has(e.event_id), `B's client was pushed ${e.type} ${e.cursor}`);
  const mid = listed[Math.floor(listed.length / 2)]!.cursor;
  const again = await clientOf(t, b, token);
  const caught = result<{ events: Array<{ cursor: number }> }>(await again.request('event.list', { after: mid, limit: 1000 })).events;
  t.same(caught.map((e) => e.cursor), cursors.filter((c) => c > mid), 'reconnected to B, the client catches up from its cursor');
  const verify = result<{ ok: boolean }>(await onB.request('audit.verify', {}, 10_000));
  t.equal(verify.ok, true, 'the audit chain both replicas appended to verifies');
});

t.test('kill -9 the replica holding a paused run: approved on another replica, the run completes there, once (M1)', { skip }, async (t) => {
  const { a, b, token } = await twoReplicas(t);
  const onA = await clientOf(t, a, token);
  const call = result<Invoke>(await onA.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'survivor', body: 'of a kill' }, wait_ms: 3000 }, 10_000));
  t.equal(call.state, 'paused');
  a.child.kill('SIGKILL');
  await new Promise<void>((r) => (a.child.exitCode !== null || a.child.signalCode !== null ? r() : a.child.once('exit', () => r())));
  const onB = await clientOf(t, b, token);
  result(await onB.request('approval.resolve', { approval_id: call.approval_id, decision: 'approved', reason: 'A is gone' }));
  t.equal(await waitState(onB, call.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded', 'B finished the run A held');
  const steps = result<{ steps: Array<{ attempts: unknown[]; state: string }> }>(await onB.request('run.get', { run_id: call.run_id })).steps;
  t.same(steps.map((s) => [s.state, s.attempts.length]), [['succeeded', 1]], 'one attempt: nothing repeated');
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await onB.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} }, 10_000)).output.notes;
  t.same(notes.map((n) => n.title), ['survivor'], 'the note was added exactly once');
});
