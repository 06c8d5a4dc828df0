// The "done when", end to end with real parts: a gateway on port 0 with the built telegram
// and notes plugins, a local Telegram-shaped API server, and a local Chat Completions server that
// scripts the model. An allowed sender's message starts a turn; the model asks for a
// state_changing tool; the turn waits; the operator approves; the tool runs; the reply is
// delivered once to the same chat with a receipt. The same update three times makes one turn;
// an unknown sender gets a pairing code and no turn; a forged secret token gets 401 and nothing
// is stored.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { startTestGateway, removeHome, connect, type TestGateway } from '../../helpers/gateway.js';
import { startMockTelegram, telegramUpdate, type MockTelegram } from '../../helpers/mock-chat.js';
import { startMockOpenAi, type MockOpenAi } from '../../helpers/mock-openai.js';
import { setBackend } from '../../../core/conversations/settings.js';

const TELEGRAM = new URL('../../../plugins/telegram/build/', import.meta.url).pathname;
const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };
const BOT_TOKEN = '123456:ABC-test-bot-token';
const WEBHOOK_SECRET = 'whsec-' + randomBytes(12).toString('hex');

interface World {
  gw: TestGateway;
  telegram: MockTelegram;
  model: MockOpenAi;
  post(update: Record<string, unknown>, secret?: string): Promise<{ status: number; body: unknown }>;
}

async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function world(t: Test): Promise<World> {
  const telegram = await startMockTelegram({ token: BOT_TOKEN });
  const model = await startMockOpenAi({ script: [] });
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    await telegram.close();
    await model.close();
    removeHome(gw.home);
  });
  for (const [dir, risks] of [
    [TELEGRAM, []],
    [NOTES, ['state_changing', 'storage']],
  ] as const) {
    const id = dir.includes('telegram') ? 'telegram' : 'notes';
    await gw.plugins.install(dir, CLI);
    await gw.plugins.grant(id, { allRequested: true, acceptRisks: [...risks] }, CLI);
    await gw.plugins.enable(id, CLI);
  }
  gw.secrets.set('TG_WEBHOOK', Buffer.from(WEBHOOK_SECRET), [], { localOnly: true });
  gw.secrets.set('TG_BOT', Buffer.from(BOT_TOKEN), [telegram.url]);
  setBackend(gw.store, gw.secrets, { baseUrl: model.url, model: 'scripted' });
  gw.channels.add({ plugin: 'telegram', name: 'bot', apiBase: telegram.url, verifySecret: 'TG_WEBHOOK', credentialSecret: 'TG_BOT', allow: ['42'] });
  const post = async (update: Record<string, unknown>, secret = WEBHOOK_SECRET) => {
    const res = await fetch(`http://127.0.0.1:${gw.port}/channels/telegram/bot/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret },
      body: JSON.stringify(update),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  };
  return { gw, telegram, model, post };
}

t.test('an allowed sender asks, the model calls a state_changing tool, the operator approves, the reply is delivered once with a receipt', async (t) => {
  const w = await world(t);
  const admin = await connect(w.gw);
  t.teardown(() => admin.conn.ws.close());
  w.model.push(
    { tool_calls: [{ id: 'call_1', name: 'notes__add_note', arguments: JSON.stringify({ title: 'Buy milk', body: '2 litres' }) }] },
    { content: 'Done: I added the note "Buy milk".' },
  );
  const update = telegramUpdate({ update_id: 1001, chat_id: 42, from_id: 42, text: 'please note: buy milk' });
  // The same update delivered three times (Telegram retries) makes one turn.
  for (let i = 0; i < 3; i++) t.equal((await w.post(update)).status, 200, `delivery ${i + 1} accepted`);

  const approval = await until('a pending approval', () => w.gw.approvals.list({ state: 'pending' })[0]);
  t.equal(approval.tool_id, 'notes.add_note', 'the model asked for the state_changing tool, and it waits for an operator');
  const conv = w.gw.conversations.list(10)[0]!;
  t.equal(conv.channel, 'telegram/bot');
  t.equal(conv.account, '42');
  await until('the turn to show it waits for an approval', () => w.gw.store.conversations.turns(conv.id, 10)[0]!.waiting === 'approval');
  t.equal(w.telegram.served().length, 0, 'nothing was sent before the approval');

  const res = await admin.conn.request('approval.resolve', { approval_id: approval.id, decision: 'approved' });
  t.equal((res as { ok: boolean }).ok, true, JSON.stringify(res));
  await until('the reply delivered', () => w.telegram.sent.length > 0);
  await until('the delivery marked delivered', () => w.gw.store.conversations.deliveries(conv.id, 5).find((d) => d.state === 'delivered'));

  t.equal(w.telegram.sent.length, 1, 'one reply');
  t.equal(w.telegram.sent[0]!.chat_id, '42', 'to the same chat');
  t.match(w.telegram.sent[0]!.text, /Buy milk/);
  const [d] = w.gw.store.conversations.deliveries(conv.id, 5);
  t.same(JSON.parse(d!.receipts), [String(w.telegram.sent[0]!.message_id)], 'the receipt is the platform message id');
  const turns = w.gw.store.conversations.turns(conv.id, 10);
  t.equal(turns.length, 1, 'three deliveries of one update made one turn');
  t.equal(turns[0]!.state, 'completed');
  t.equal(w.model.requests.length, 2, 'two model calls: the tool call and the answer');
  // The model saw the tool's result and the untrusted-provenance marking of the channel text.
  const second = w.model.requests[1]!.body as { messages: Array<{ role: string; content: string | null }> };
  t.match(JSON.parse(second.messages.find((m) => m.role === 'user')!.content!), { channel: 'telegram/bot', chat: 'direct message', sender: { id: '42' }, webhook_verified: true, text: 'please note: buy milk' }, 'channel text reaches the model inside an envelope the gateway writes');
  t.match(second.messages.find((m) => m.role === 'tool')!.content, /"ok":true/);
  const notes = await w.gw.tools.invoke('notes.list_notes', {}, { kind: 'test' });
  t.match((notes.output as { notes: Array<{ title: string }> }).notes, [{ title: 'Buy milk' }], 'the tool ran once');
  // Events and evidence.
  const events: string[] = w.gw.engine.events.after(0, 1000).map((e) => e.type);
  for (const type of ['message.created', 'turn.started', 'message.final', 'turn.completed', 'delivery.receipt']) t.ok(events.includes(type), `${type} was written to the outbox`);
  t.ok(w.telegram.requests.every((r) => r.path === `/bot${BOT_TOKEN}/sendMessage`), 'the host injected the credential into the path');
});

t.test('an unknown sender gets a pairing code and no turn; the operator approves the code; a forged secret token gets 401 and nothing is stored', async (t) => {
  const w = await world(t);
  t.equal((await w.post(telegramUpdate({ update_id: 2001, chat_id: 77, from_id: 77, text: 'hello?' }))).status, 200);
  await until('the pairing code delivered', () => w.telegram.sent.length > 0);
  const code = /pairing code is ([A-Z0-9]{4}-[A-Z0-9]{4})/.exec(w.telegram.sent[0]!.text)?.[1];
  t.ok(code, 'the unknown sender was sent a pairing code');
  t.equal(w.telegram.sent[0]!.chat_id, '77', 'in their own chat');
  t.equal(w.model.requests.length, 0, 'no turn, no model call');
  t.same(w.gw.store.conversations.activeTurns(), [], 'no turn queued');
  // Writing again within the hour sends no second code.
  await w.post(telegramUpdate({ update_id: 2002, chat_id: 77, from_id: 77, text: 'hello??' }));
  await new Promise((r) => setTimeout(r, 200));
  t.equal(w.telegram.sent.length, 1, 'one code per hour');

  // The operator sees the waiting sender and approves the code over the protocol; the sender's
  // next message starts a turn.
  const op = await connect(w.gw);
  t.teardown(() => op.conn.ws.close());
  const channels = (await op.conn.request('channel.list', {})) as { result: { channels: Array<{ channel: string; webhook_path: string; plugin_enabled: boolean }> } };
  t.match(channels.result.channels, [{ channel: 'telegram/bot', webhook_path: '/channels/telegram/bot/webhook', plugin_enabled: true }]);
  const senders = (await op.conn.request('channel.senders', { channel: 'telegram/bot' })) as { result: { senders: Array<{ sender_id: string; state: string; code: string | null }> } };
  t.match(senders.result.senders.find((x) => x.sender_id === '77'), { state: 'pending', code });
  const decided = (await op.conn.request('channel.sender.decide', { channel: 'telegram/bot', sender: code!, action: 'allow' })) as { result: { sender: { sender_id: string; state: string } } };
  t.match(decided.result.sender, { sender_id: '77', state: 'allowed' });
  const nope = (await op.conn.request('channel.sender.decide', { channel: 'telegram/nobot', sender: '1', action: 'allow' })) as { error: { code: string } };
  t.equal(nope.error.code, 'not_found');
  w.model.push({ content: 'Hi! How can I help?' });
  await w.post(telegramUpdate({ update_id: 2003, chat_id: 77, from_id: 77, text: 'hi again' }));
  await until('the answer', () => w.telegram.sent.length > 1);
  t.equal(w.telegram.sent[1]!.text, 'Hi! How can I help?');

  // Forged: 401, and nothing stored.
  const before = w.gw.store.conversations.lastMessages(w.gw.conversations.list(10)[0]!.id, 1000).length;
  const forged = await w.post(telegramUpdate({ update_id: 2004, chat_id: 77, from_id: 77, text: 'forged' }), 'not-the-secret');
  t.equal(forged.status, 401);
  const missing = await fetch(`http://127.0.0.1:${w.gw.port}/channels/telegram/bot/webhook`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(missing.status, 401, 'no secret header: 401');
  t.equal(w.gw.store.conversations.lastMessages(w.gw.conversations.list(10)[0]!.id, 1000).length, before, 'nothing stored');
  t.equal(w.gw.store.conversations.claimInbound(w.gw.channels.instance('telegram/bot').id, '2004', 'probe', Date.now()), true, 'the forged update id was never recorded');
  const unknown = await fetch(`http://127.0.0.1:${w.gw.port}/channels/telegram/nobot/webhook`, { method: 'POST', body: '{}' });
  t.equal(unknown.status, 404, 'an unknown instance is 404');
});

t.test('the platform API down for a while: the outbox retries with backoff and delivers exactly once', async (t) => {
  const w = await world(t);
  w.telegram.failNext(2, 503);
  w.model.push({ content: 'Pong.' });
  await w.post(telegramUpdate({ update_id: 3001, chat_id: 42, from_id: 42, text: 'ping' }));
  await until('delivered after retries', () => w.telegram.sent.length > 0, 30_000);
  const conv = w.gw.conversations.list(10)[0]!;
  const d = await until('the delivery row delivered', () => w.gw.store.conversations.deliveries(conv.id, 5).find((x) => x.state === 'delivered'));
  t.equal(d.attempts, 3, 'two failures, then a delivery');
  t.equal(w.telegram.sent.length, 1, 'exactly one delivery');
  t.equal(w.telegram.requests.length, 3);
});
