// Turns waiting for an operator's approval do not hold a slot of limits.max_concurrent_turns
// (found in review: they did, for as long as the approval lives, so a few such turns stopped every
// other conversation, the operator's own included).
import t from 'tap';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';
import { startMockOpenAi, type MockRequest } from '../../helpers/mock-openai.js';
import { setBackend } from '../../../core/conversations/settings.js';

const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };

async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('two turns waiting for approvals do not block a third conversation (max_concurrent_turns = 2)', async (t) => {
  // Every request asking to "write" gets a state_changing tool call; anything else an answer.
  const model = await startMockOpenAi({
    script: (req: MockRequest) => {
      const msgs = (req.body as { messages: Array<{ role: string; content: string | null }> }).messages;
      const last = msgs[msgs.length - 1]!;
      if (last.role === 'user' && /write/.test(last.content ?? '')) return { tool_calls: [{ name: 'notes__add_note', arguments: JSON.stringify({ title: 't', body: 'b' }) }] };
      return { content: 'hello' };
    },
  });
  const gw = await startTestGateway({ config: { limits: { max_concurrent_turns: 2 } } });
  t.teardown(async () => {
    await gw.close();
    await model.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
  setBackend(gw.store, gw.secrets, { baseUrl: model.url, model: 'scripted' });
  const admin = await connect(gw);
  t.teardown(() => admin.conn.ws.close());
  const create = async () => ((await admin.conn.request('conversation.create', {})) as { result: { conversation: { conversation_id: string } } }).result.conversation.conversation_id;
  for (let i = 0; i < 2; i++) await admin.conn.request('conversation.send', { conversation_id: await create(), text: 'write a note' });
  await until('two pending approvals', () => gw.approvals.list({ state: 'pending' }).length === 2);
  const third = await create();
  await admin.conn.request('conversation.send', { conversation_id: third, text: 'just say hello' });
  let answered = false;
  try {
    await until('the third conversation answered', () => gw.store.conversations.turns(third, 1)[0]?.state === 'completed', 5000);
    answered = true;
  } catch {
    answered = false;
  }
  t.ok(answered, `a conversation that needs no approval is answered while others wait (third turn: ${gw.store.conversations.turns(third, 1)[0]?.state})`);
});
