// The scheduler in a real gateway: fires across kill -9 (at the scheduler's crash point, inside
// the claim transaction, and right after fires) and restarts, and a heartbeat's agent turn against
// a local Chat Completions server.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore } from '../../../core/store/index.js';
import { spawnCli, runCli } from '../../helpers/cli.js';
import { startTestGateway, removeHome, writeTestConfig } from '../../helpers/gateway.js';
import { startMockOpenAi } from '../../helpers/mock-openai.js';

function fires(home: string, name: string) {
  const store = openStore(join(home, 'tyrum.db'), { readonly: true });
  try {
    const s = store.schedules.byName(name)!;
    const f = store.schedules.fires(s.id, 1000).sort((a, b) => a.fire_at - b.fire_at);
    const runs = store.execution.listRuns({ limit: 1000 }).filter((r) => r.created_by === `schedule:${s.id}`);
    return { s, fires: f, runs };
  } finally {
    store.close();
  }
}

async function until(fn: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

t.test('kill -9 inside a claim and right after fires: every tick fires at most once, each fire has exactly one run', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-sched-'));
  t.teardown(() => removeHome(home));
  const H = ['--home', home];
  t.equal((await runCli(['schedule', 'add', 'tick', '--every', '1s', '--tool', 'none.missing', '--args', '{"x":1}', ...H])).code, 0);
  const env = { ...process.env, TYRUM_HOME: home };
  // 1. Killed at the third claim, after its run was written but before the commit.
  const crashed = spawnCli(['start', '--port', '0', ...H], { env: { ...env, TYRUM_TEST_CRASH_AT: 'schedule_fired:3' } });
  t.equal(await crashed.exit(60_000), null, 'killed by SIGKILL at the crash point');
  const afterCrash = fires(home, 'tick');
  t.equal(afterCrash.fires.length, 2, 'the third claim left nothing behind');
  // 2. Restarted; killed with SIGKILL right after more fires.
  const second = spawnCli(['start', '--port', '0', ...H], { env });
  t.teardown(() => second.child.kill('SIGKILL'));
  await until(() => fires(home, 'tick').fires.length >= 5, 60_000, 'five fires');
  second.child.kill('SIGKILL');
  await second.exit(30_000);
  // 3. Restarted again and stopped cleanly.
  const third = spawnCli(['start', '--port', '0', ...H], { env });
  t.teardown(() => third.child.kill('SIGKILL'));
  const before = fires(home, 'tick').fires.length;
  await until(() => fires(home, 'tick').fires.length >= before + 2, 60_000, 'two more fires');
  third.child.kill('SIGTERM');
  await third.exit(30_000);

  const { s, fires: all, runs } = fires(home, 'tick');
  const ticks = all.map((f) => f.fire_at);
  t.equal(new Set(ticks).size, ticks.length, 'no tick fired twice');
  for (const x of ticks) t.equal((x - s.anchor_at) % 1000, 0, 'fires are on ticks');
  t.equal(runs.length, all.length, 'one run per fire');
  t.same(runs.map((r) => r.idempotency_key).sort(), all.map((f) => `sched:${s.id}:${f.fire_at}`).sort(), 'each run is its fire\'s');
  // Every tick from the schedule's first (one interval after it was added) through the last fire
  // either fired or was counted missed (downtime, a slow start).
  const span = (ticks[ticks.length - 1]! - s.anchor_at) / 1000;
  t.equal(all.length + s.missed, span, `${all.length} fires + ${s.missed} missed = ${span} ticks`);
  t.equal(s.fires, all.length);
  const verify = await runCli(['audit', 'verify', ...H]);
  t.equal(verify.code, 0, verify.out + verify.err);
});

t.test('a heartbeat starts agent turns in its own conversation, shown to the model as coming from the scheduler', async (t) => {
  const ai = await startMockOpenAi({ script: () => ({ content: 'all quiet' }) });
  t.teardown(() => ai.close());
  const home = mkdtempSync(join(tmpdir(), 'tyrum-hb-'));
  t.teardown(() => removeHome(home));
  // Before the CLI initialises the home: with TYRUM_TEST_STORE=postgres its store is PostgreSQL.
  await writeTestConfig(home);
  const H = ['--home', home];
  const set = await runCli(['backend', 'set', '--base-url', ai.url, '--model', 'm', ...H]);
  t.equal(set.code, 0, set.err);
  const add = await runCli(['schedule', 'add', 'hb', '--heartbeat', '1s', ...H]);
  t.equal(add.code, 0, add.err);
  const gw = await startTestGateway({ home });
  t.teardown(() => gw.close());
  await until(() => ai.requests.length >= 2, 30_000, 'two model requests');
  const body = ai.requests[0]!.body as { messages: Array<{ role: string; content: string }> };
  const user = body.messages.filter((m) => m.role === 'user');
  t.match(user[user.length - 1]!.content, /^\[from the scheduler: heartbeat "hb", fired for \d{4}-.*\]\nheartbeat: check in$/);
  const s = gw.store.schedules.byName('hb')!;
  const f = gw.store.schedules.fires(s.id, 10);
  t.ok(f.length >= 2);
  t.ok(f.every((x) => x.conversation_id === f[0]!.conversation_id && x.message_id !== null), 'every fire goes to the one heartbeat conversation');
  const conv = gw.store.conversations.conversation(f[0]!.conversation_id!)!;
  t.equal(conv.created_by, `schedule:${s.id}`);
  const msg = gw.store.conversations.message(f[f.length - 1]!.message_id!)!;
  t.match(JSON.parse(msg.provenance), { source: 'schedule', schedule_id: s.id, name: 'hb', kind: 'heartbeat' });
});
