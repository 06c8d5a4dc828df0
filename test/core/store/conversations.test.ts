import t, { type Test } from 'tap';
import type { ConversationRow, DeliveryRow, MessageRow, TurnRow } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

const conv = (id: string, over: Partial<ConversationRow> = {}): ConversationRow => ({ id, channel: 'operator', account: 'tok', thread: id, title: null, created_by: 'u', created_at: 1, updated_at: 1, ...over });
const msg = (id: string, over: Partial<Omit<MessageRow, 'seq'>> = {}): Omit<MessageRow, 'seq'> => ({
  id, conversation_id: 'conv_1', role: 'user', content: 'hi', tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: '{"source":"operator"}', usage: null, created_at: 1, ...over,
});
const turn = (id: string, over: Partial<TurnRow> = {}): TurnRow => ({ id, conversation_id: 'conv_1', state: 'queued', waiting: null, steps: 0, usage: '{}', error: null, owner: null, created_at: 1, started_at: null, finished_at: null, ...over });

forEachBackend(t, 'conversations: messages numbered per conversation, one queued and one running turn at a time, waiting messages taken once', async (t: Test, { repos: s }) => {
  s.conversations.insertConversation(conv('conv_1'));
  s.conversations.insertConversation(conv('conv_2', { channel: 'telegram', updated_at: 5 }));
  t.throws(() => s.conversations.insertConversation(conv('conv_3', { thread: 'conv_1' })), /UNIQUE/, 'one conversation per (channel, account, thread)');
  t.equal(s.conversations.conversationByKey('operator', 'tok', 'conv_1')?.id, 'conv_1');
  t.same(s.conversations.conversations(10).map((c) => c.id), ['conv_2', 'conv_1']);
  t.same(s.conversations.conversations(10, 'telegram').map((c) => c.id), ['conv_2']);
  t.same(s.conversations.conversations(10, undefined, 5).map((c) => c.id), ['conv_1']);
  t.equal(s.conversations.insertMessage(msg('msg_1', { provenance: '{"source":"operator","idempotency_key":"k1"}' })), 1);
  t.equal(s.conversations.insertMessage(msg('msg_2')), 2);
  t.equal(s.conversations.insertMessage(msg('msg_x', { conversation_id: 'conv_2' })), 1, 'per conversation');
  t.equal(s.conversations.messageByKey('conv_1', 'k1')?.id, 'msg_1', 'found by the idempotency key in its provenance');
  t.equal(s.conversations.messageByKey('conv_1', 'k2'), undefined);
  t.equal(s.conversations.waitingCount('conv_1'), 2);
  t.equal(s.conversations.firstWaiting('conv_1')?.id, 'msg_1');
  s.conversations.insertTurn(turn('turn_1'));
  t.throws(() => s.conversations.insertTurn(turn('turn_2')), /UNIQUE/, 'one queued turn per conversation');
  t.equal(s.conversations.takeWaiting('conv_1', 'turn_1'), 2);
  t.equal(s.conversations.takeWaiting('conv_1', 'turn_1'), 0);
  t.same(s.conversations.messagesOfTurn('turn_1').map((m) => m.seq), [1, 2]);
  t.equal(s.conversations.updateTurn('turn_1', ['queued'], { state: 'running', started_at: 2, owner: 'w' }), true);
  t.equal(s.conversations.updateTurn('turn_1', ['queued'], { state: 'running' }), false);
  t.equal(s.conversations.turnIn('conv_1', 'running')?.id, 'turn_1');
  t.same(s.conversations.activeTurns().map((x) => x.id), ['turn_1']);
  t.same(s.conversations.lastMessages('conv_1', 1).map((m) => m.id), ['msg_2']);
  t.same(s.conversations.lastMessagesBefore('conv_1', 2, 5).map((m) => m.id), ['msg_1']);
});

forEachBackend(t, 'channels: instances, senders by code, inbound ids taken once, deliveries due in order', async (t: Test, { repos: s }) => {
  s.conversations.insertInstance({ id: 'chan_1', plugin_id: 'tg', channel: 'telegram', name: 'bot', api_base: 'https://api', credential_secret: null, verify_secret: 'v', dm_policy: 'pairing', created_at: 1, updated_at: 1 });
  t.equal(s.conversations.instanceByName('tg', 'bot')?.id, 'chan_1');
  s.conversations.putSender({ instance_id: 'chan_1', sender_id: 'u1', state: 'pending', name: null, code: 'ABC', chat_id: 'c1', code_expires_at: 100, created_at: 1, updated_at: 1 });
  t.equal(s.conversations.senderByCode('chan_1', 'ABC')?.sender_id, 'u1');
  t.equal(s.conversations.pendingSenders('chan_1', 50), 1);
  s.conversations.putSender({ instance_id: 'chan_1', sender_id: 'u1', state: 'allowed', name: 'Ann', code: null, chat_id: 'c1', code_expires_at: null, created_at: 9, updated_at: 9 });
  t.match(s.conversations.sender('chan_1', 'u1'), { state: 'allowed', name: 'Ann', created_at: 1 });
  t.equal(s.conversations.claimInbound('chan_1', 'ext1', 'message', 10), true);
  t.equal(s.conversations.claimInbound('chan_1', 'ext1', 'message', 11), false, 'a duplicate delivery is taken once');
  s.conversations.claimInbound('chan_1', 'ext2', 'ignored', 20);
  t.equal(s.conversations.pruneInbound(15, 10), 1, 'only what was received before the cutoff');
  s.conversations.insertConversation(conv('conv_1', { channel: 'telegram' }));
  s.conversations.insertMessage(msg('msg_1', { role: 'assistant' }));
  const d: DeliveryRow = { id: 'dlv_1', instance_id: 'chan_1', conversation_id: 'conv_1', message_id: 'msg_1', chat_id: 'c1', thread_id: null, text: 'hello', state: 'pending', parts_sent: 0, receipts: '[]', attempts: 0, next_attempt_at: 30, last_error: null, created_at: 1, updated_at: 1, finished_at: null };
  s.conversations.insertDelivery(d);
  t.equal(s.conversations.nextDeliveryAt(), 30);
  t.same(s.conversations.dueDeliveries(29, 5), []);
  t.same(s.conversations.dueDeliveries(30, 5).map((x) => x.id), ['dlv_1']);
  s.conversations.updateDelivery('dlv_1', { state: 'delivered', parts_sent: 1, finished_at: 31, updated_at: 31 });
  t.equal(s.conversations.nextDeliveryAt(), null);
  t.equal(s.conversations.deleteInstance('chan_1'), true);
  t.equal(s.conversations.delivery('dlv_1'), undefined, 'deliveries go with their instance');
});
