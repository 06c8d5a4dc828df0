// The CLI of agents and channels: tyrum secret set --local-only, tyrum channel add|list|senders|
// remove, tyrum backend set|show|test, tyrum chat --message, against a running gateway and local
// servers speaking the Chat Completions shape.
import t from 'tap';
import { runCli, cliGateway } from '../../helpers/cli.js';
import { startMockOpenAi } from '../../helpers/mock-openai.js';
import { secret } from '../../../core/cli/secret.js';

const TELEGRAM = new URL('../../../plugins/telegram/build/', import.meta.url).pathname;
const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;

async function setSecret(home: string, name: string, value: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await secret(['set', name, ...args, '--home', home], { out: (s) => out.push(s), err: (s) => err.push(s) }, async () => Buffer.from(value));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

t.test('channel add, list, senders and remove; clear errors for what is missing', async (t) => {
  const { H } = await cliGateway(t);
  const local = await setSecret(H[1]!, 'TG_WEBHOOK', 'a-random-webhook-secret', ['--local-only']);
  t.equal(local.code, 0, local.out);
  t.match(local.out, /local-only \(never sent anywhere\)/);
  await t.rejects(setSecret(H[1]!, 'BAD', 'value-123', ['--local-only', '--destinations', 'x.example']), { code: 'TYRUM_ERR_INVALID_ARGUMENT' }, '--local-only excludes --destinations');
  const list = await runCli(['secret', 'list', '--json', ...H]);
  t.match(JSON.parse(list.out), { secrets: [{ name: 'TG_WEBHOOK', destinations: [] }] });

  const noPlugin = await runCli(['channel', 'add', 'telegram', 'bot', '--verify-secret', 'TG_WEBHOOK', ...H]);
  t.equal(noPlugin.code, 1);
  t.match(noPlugin.err, /no plugin telegram is installed/);
  t.equal((await runCli(['plugin', 'install', TELEGRAM, ...H])).code, 0);
  const noSecret = await runCli(['channel', 'add', 'telegram', 'bot', '--verify-secret', 'NOPE', ...H]);
  t.match(noSecret.err, /secret handle NOPE does not exist/);
  const badName = await runCli(['channel', 'add', 'telegram', 'Bot!', '--verify-secret', 'TG_WEBHOOK', ...H]);
  t.equal(badName.code, 2);
  const missing = await runCli(['channel', 'add', 'telegram', 'bot', ...H]);
  t.equal(missing.code, 2);
  t.match(missing.err, /--verify-secret/);

  const add = await runCli(['channel', 'add', 'telegram', 'bot', '--verify-secret', 'TG_WEBHOOK', '--allow', '42,43', ...H]);
  t.equal(add.code, 0, add.err);
  t.match(add.out, /added channel telegram\/bot/);
  t.match(add.out, /POST \/channels\/telegram\/bot\/webhook on the gateway.s address \(http:\/\/127\.0\.0\.1:\d+/);
  t.match(add.out, /not enabled yet: tyrum plugin enable telegram/);
  t.equal((await runCli(['channel', 'add', 'telegram', 'bot', '--verify-secret', 'TG_WEBHOOK', ...H])).code, 1, 'a second add of the same name is a conflict');
  const ls = JSON.parse((await runCli(['channel', 'list', '--json', ...H])).out) as { channels: Array<{ channel: string; webhook_path: string; dm_policy: string }> };
  t.match(ls.channels, [{ channel: 'telegram/bot', webhook_path: '/channels/telegram/bot/webhook', dm_policy: 'pairing' }]);
  const senders = JSON.parse((await runCli(['channel', 'senders', 'telegram/bot', '--json', ...H])).out) as { senders: Array<{ sender_id: string; state: string }> };
  t.same(senders.senders.map((s) => [s.sender_id, s.state]).sort(), [
    ['42', 'allowed'],
    ['43', 'allowed'],
  ]);
  t.match((await runCli(['channel', 'senders', 'telegram/bot', '--deny', '43', ...H])).out, /43 is now denied/);
  t.match((await runCli(['channel', 'senders', 'telegram/bot', '--remove', '42', ...H])).out, /removed sender 42/);
  t.equal((await runCli(['channel', 'senders', 'telegram/bot', '--approve', 'ABCD-EFGH', '--deny', 'x', ...H])).code, 2, 'one action at a time');
  t.match((await runCli(['channel', 'remove', 'telegram/bot', ...H])).out, /removed channel telegram\/bot/);
  t.match((await runCli(['channel', 'remove', 'telegram/bot', ...H])).err, /no channel telegram\/bot/);
  const audit = await runCli(['audit', 'list', '--json', ...H]);
  for (const type of ['channel.added', 'channel.sender_denied', 'channel.sender_removed', 'channel.removed']) t.match(audit.out, new RegExp(`"type":"${type.replace('.', '\\.')}"`), `${type} is audited`);
});

t.test('backend set, show and test; chat --message through the gateway', async (t) => {
  const { H, env } = await cliGateway(t);
  const model = await startMockOpenAi({ script: [] });
  t.teardown(() => model.close());
  const unbound = await setSecret(H[1]!, 'MODEL_KEY', 'sk-test-key-123', ['--destinations', 'api.openai.com']);
  t.equal(unbound.code, 0);
  const refused = await runCli(['backend', 'set', '--base-url', model.url, '--model', 'm', '--api-key-secret', 'MODEL_KEY', ...H]);
  t.equal(refused.code, 2, 'a usage error');
  t.match(refused.err, /MODEL_KEY may not be sent to http:\/\/127\.0\.0\.1:\d+/, 'a key is only sent where its handle is bound');
  t.equal((await setSecret(H[1]!, 'MODEL_KEY', 'sk-test-key-123', ['--destinations', new URL(model.url).origin])).code, 0);
  t.equal((await runCli(['backend', 'set', '--base-url', 'not a url', '--model', 'm', ...H])).code, 2);
  const set = await runCli(['backend', 'set', '--base-url', model.url, '--model', 'tiny', '--api-key-secret', 'MODEL_KEY', '--max-steps', '4', ...H]);
  t.equal(set.code, 0, set.err);
  const show = JSON.parse((await runCli(['backend', 'show', '--json', ...H])).out) as { backend: Record<string, unknown> };
  t.match(show.backend, { model: 'tiny', api_key_secret: 'MODEL_KEY', max_steps: 4, tools: ['*'] });
  t.notMatch(JSON.stringify(show), /sk-test-key-123/, 'the key value is never shown');

  model.push({ content: 'I am reachable.' });
  const test = await runCli(['backend', 'test', ...H]);
  t.equal(test.code, 0, test.err);
  t.match(test.out, /ok: .* answered in \d+ ms/);
  t.match(test.out, /I am reachable\./);
  t.equal(model.requests[0]!.headers.authorization, 'Bearer sk-test-key-123', 'the host injected the key');

  model.push({ content: 'Hello, operator.' });
  const chat = await runCli(['chat', '--message', 'hello', '--json'], env);
  t.equal(chat.code, 0, chat.err);
  const events = chat.out.split('\n').map((l) => JSON.parse(l) as { type: string; payload: Record<string, unknown> });
  t.ok(events.some((e) => e.type === 'turn.started'));
  t.equal(
    events
      .filter((e) => e.type === 'message.delta')
      .map((e) => e.payload.delta)
      .join(''),
    'Hello, operator.',
    'the answer streamed in as message.delta events',
  );
  t.ok(events.some((e) => e.type === 'typing.started') && events.some((e) => e.type === 'typing.stopped'), 'typing events');
  t.match(events.find((e) => e.type === 'message.final')?.payload, { content: 'Hello, operator.' });
  t.ok(events.some((e) => e.type === 'turn.completed'));
  t.equal((await runCli(['chat', '--conversation', 'nope', '--message', 'x'], env)).code, 2);
});

t.test('tyrum chat shows the approval its own turn waits for (and no other), and strips terminal control sequences', async (t) => {
  const { gw, H, env } = await cliGateway(t);
  const model = await startMockOpenAi({ script: [] });
  t.teardown(() => model.close());
  for (const argv of [
    ['plugin', 'install', NOTES],
    ['plugin', 'grant', 'notes', '--all-requested', '--accept-risk', 'state_changing,storage'],
    ['plugin', 'enable', 'notes'],
    ['backend', 'set', '--base-url', model.url, '--model', 'm'],
  ]) {
    const r = await runCli([...argv, ...H]);
    t.equal(r.code, 0, r.err);
  }
  // Someone else's pending approval: not this chat's business.
  const other = await runCli(['tool', 'call', 'notes.add_note', '--args', '{"title":"other","body":""}'], env);
  t.equal(other.code, 3);
  model.push({ tool_calls: [{ id: 'c1', name: 'notes__add_note', arguments: '{"title":"mine","body":""}' }], stream: false }, { content: 'Saved \u001b]0;pwned\u0007\u001b[2Jyour note.', stream: false });
  const shown: string[] = [];
  const chat = runCli(['chat', '--message', 'note mine'], env, (line) => shown.push(line));
  const mine = await (async () => {
    for (let i = 0; i < 300; i++) {
      const a = gw.approvals.list({ state: 'pending' }).find((x) => (x.args as { title?: string }).title === 'mine');
      if (a) return a;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('no approval for the chat');
  })();
  // Resolved once the chat has shown it: resolving earlier races the chat's own approval.list
  // (it shows only what is still pending), which PostgreSQL's timing lost.
  for (let i = 0; i < 300 && !shown.some((l) => l.includes(`waits for approval ${mine.id}`)); i++) await new Promise((r) => setTimeout(r, 50));
  gw.approvals.resolve(mine.id, { decision: 'approved' }, { kind: 'test' });
  const r = await chat;
  t.equal(r.code, 0, r.err);
  t.match(r.out, new RegExp(`⏸ notes\\.add_note waits for approval ${mine.id}`), 'its own approval, with the id');
  const otherId = gw.approvals.list({ state: 'pending' }).find((x) => (x.args as { title?: string }).title === 'other')!.id;
  t.notMatch(r.out, otherId, 'not the approval of another caller');
  t.match(r.out, /Saved your note\./, 'the answer, without the escape sequences');
  t.notOk(r.out.includes('\u001b'), 'no escape character reaches the terminal');
});
