// TESTPLAN K7: `kill -9` mid-turn, restart: the turn completes, no tool call repeated, one reply
// delivered. A real `tyrum start` process, configured with the CLI; the kill comes while the model
// is computing its answer after the (approved) tool call ran.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCli } from '../../helpers/cli.js';
import { connect, removeHome } from '../../helpers/gateway.js';
import { startMockTelegram, telegramUpdate } from '../../helpers/mock-chat.js';
import { startMockOpenAi } from '../../helpers/mock-openai.js';
import { openHome } from '../../../core/runtime.js';
import { setBackend } from '../../../core/conversations/settings.js';

const TELEGRAM = new URL('../../../plugins/telegram/build/', import.meta.url).pathname;
const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const BIN = new URL('../../../bin/tyrum.js', import.meta.url).pathname;
const BOT_TOKEN = '99:crash-test-token';
const SECRET = randomBytes(16).toString('hex');

async function until<T>(what: string, pick: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function start(home: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [BIN, 'start', '--home', home, '--port', '0', '--log-level', 'silent'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await until('the gateway to listen', () => /listening on ws:\/\/127\.0\.0\.1:\d+\/ws/.test(err) || child.exitCode !== null);
  const port = Number(/127\.0\.0\.1:(\d+)\/ws/.exec(err)?.[1]);
  if (!port) throw new Error(`gateway did not start: ${err}`);
  return { child, port };
}

t.test('kill -9 while the model answers after an approved tool call: after a restart the turn completes, the tool ran once, one reply', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-turn-kill-'));
  const telegram = await startMockTelegram({ token: BOT_TOKEN });
  const model = await startMockOpenAi({
    script: [
      { tool_calls: [{ id: 'call_a', name: 'notes__add_note', arguments: JSON.stringify({ title: 'once', body: 'only' }) }] },
      { hang: true },
      { content: 'Noted, once.' },
    ],
  });
  t.teardown(async () => {
    await telegram.close();
    await model.close();
    removeHome(home);
  });
  for (const argv of [
    ['plugin', 'install', TELEGRAM],
    ['plugin', 'grant', 'telegram', '--all-requested'],
    ['plugin', 'enable', 'telegram'],
    ['plugin', 'install', NOTES],
    ['plugin', 'grant', 'notes', '--all-requested', '--accept-risk', 'state_changing,storage'],
    ['plugin', 'enable', 'notes'],
  ]) {
    const r = await runCli([...argv, '--home', home]);
    t.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
  }
  const svc = openHome(home);
  svc.secrets.set('TG_SECRET', Buffer.from(SECRET), [], { localOnly: true });
  svc.secrets.set('TG_TOKEN', Buffer.from(BOT_TOKEN), [telegram.url]);
  setBackend(svc.store, svc.secrets, { baseUrl: model.url, model: 'scripted', timeoutMs: 60_000 });
  await svc.close();
  const add = await runCli(['channel', 'add', 'telegram', 'bot', '--verify-secret', 'TG_SECRET', '--credential-secret', 'TG_TOKEN', '--api-base', telegram.url, '--allow', '42', '--home', home]);
  t.equal(add.code, 0, add.err);

  const first = await start(home);
  t.teardown(() => first.child.kill('SIGKILL'));
  const post = (port: number) =>
    fetch(`http://127.0.0.1:${port}/channels/telegram/bot/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': SECRET },
      body: JSON.stringify(telegramUpdate({ update_id: 5001, chat_id: 42, from_id: 42, text: 'note this once' })),
    });
  t.equal((await post(first.port)).status, 200);
  const pending = await until('the approval', async () => {
    const r = await runCli(['approvals', 'list', '--json', '--home', home]);
    return (JSON.parse(r.out) as { approvals: Array<{ id: string }> }).approvals[0];
  });
  const ok = await runCli(['approvals', 'approve', pending.id, '--home', home]);
  t.equal(ok.code, 0, ok.err);
  await until('the second model call (after the tool ran)', () => model.requests.length >= 2);
  first.child.kill('SIGKILL');
  await new Promise<void>((r) => (first.child.exitCode !== null ? r() : first.child.once('exit', () => r())));
  t.equal(telegram.sent.length, 0, 'no reply before the crash');

  const second = await start(home);
  t.teardown(() => second.child.kill('SIGKILL'));
  // Telegram retries the update after the crash: still one turn.
  t.equal((await post(second.port)).status, 200);
  await until('the reply', () => telegram.sent.length > 0);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(telegram.sent.length, 1, 'one reply delivered');
  t.equal(telegram.sent[0]!.text, 'Noted, once.');
  t.equal(model.requests.length, 3, 'the cut-off model call was made again; nothing else');

  const token = (await runCli(['token', 'create', '--scopes', 'operator.read,operator.write', '--home', home])).out.trim();
  const c = await connect({ port: second.port }, { token });
  t.teardown(() => c.conn.ws.close());
  const runs = ((await c.conn.request('run.list', {})) as { result: { runs: Array<{ id: string }> } }).result.runs;
  t.equal(runs.length, 1, 'one tool run');
  const detail = ((await c.conn.request('run.get', { run_id: runs[0]!.id })) as { result: { run: { state: string }; steps: Array<{ tool_id: string; attempts: unknown[] }> } }).result;
  t.equal(detail.run.state, 'succeeded');
  t.equal(detail.steps[0]!.tool_id, 'notes.add_note');
  t.equal(detail.steps[0]!.attempts.length, 1, 'the tool call was not repeated');
  const convs = ((await c.conn.request('conversation.list', {})) as { result: { conversations: Array<{ conversation_id: string }> } }).result.conversations;
  t.equal(convs.length, 1);
  const got = ((await c.conn.request('conversation.get', { conversation_id: convs[0]!.conversation_id })) as { result: { turns: Array<{ state: string; steps: number }>; deliveries: Array<{ state: string }> } }).result;
  t.match(got.turns, [{ state: 'completed', steps: 2 }], 'one turn, completed: two stored model steps');
  t.match(got.deliveries, [{ state: 'delivered' }]);
  const verify = ((await c.conn.request('audit.verify', {})) as { result: { ok: boolean } }).result;
  t.equal(verify.ok, true, 'the audit chain verifies after the crash');
  second.child.kill('SIGTERM');
  await new Promise<void>((r) => second.child.once('exit', () => r()));
});
