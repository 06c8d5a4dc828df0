import t, { type Test } from 'tap';
import type { ConversationRow, MessageRow, NewDeliveryRow, NewTurnRow } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

/** Tests whose times are the caller's: on PostgreSQL leases, heartbeats and deadlines use the server's clock. */
const PG_CLOCK = { postgres: 'caller-set times: PostgreSQL measures leases on its own clock (test/core/store/pg/lease-clock.test.ts)' };

const conv = (id: string, over: Partial<ConversationRow> = {}): ConversationRow => ({ id, channel: 'operator', account: 'tok', thread: id, title: null, created_by: 'u', created_at: 1, updated_at: 1, ...over });
const msg = (id: string, over: Partial<Omit<MessageRow, 'seq'>> = {}): Omit<MessageRow, 'seq'> => ({
  id, conversation_id: 'conv_1', role: 'user', content: 'hi', tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: '{"source":"operator"}', usage: null, created_at: 1, ...over,
});
const turn = (id: string, over: Partial<NewTurnRow> = {}): NewTurnRow => ({ id, conversation_id: 'conv_1', state: 'queued', waiting: null, steps: 0, usage: '{}', error: null, owner: null, created_at: 1, started_at: null, finished_at: null, ...over });

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
  const d: NewDeliveryRow = { id: 'dlv_1', instance_id: 'chan_1', conversation_id: 'conv_1', message_id: 'msg_1', chat_id: 'c1', thread_id: null, text: 'hello', state: 'pending', parts_sent: 0, receipts: '[]', attempts: 0, next_attempt_at: 30, last_error: null, created_at: 1, updated_at: 1, finished_at: null };
  s.conversations.insertDelivery(d);
  t.equal(s.conversations.nextDeliveryAt(), 30);
  t.same(s.conversations.dueDeliveries(29, 5), []);
  t.same(s.conversations.dueDeliveries(30, 5).map((x) => x.id), ['dlv_1']);
  s.conversations.updateDelivery('dlv_1', { state: 'delivered', parts_sent: 1, finished_at: 31, updated_at: 31 });
  t.equal(s.conversations.nextDeliveryAt(), null);
  t.equal(s.conversations.deleteInstance('chan_1'), true);
  t.equal(s.conversations.delivery('dlv_1'), undefined, 'deliveries go with their instance');
});

forEachBackend(t, 'turn leases (migration 20): claimed with a token, taken over only once expired, later writes fenced by owner and token', async (t: Test, { repos: s }) => {
  const c = s.conversations;
  c.insertConversation(conv('conv_1'));
  c.insertTurn(turn('turn_1'));
  const a = c.claimTurn('turn_1', 'A', 100, 50)!;
  t.match(a, { state: 'running', owner: 'A', started_at: 100, lease_expires_at: 150, fencing_token: 1 }, 'claimed: A holds it until 150, token 1');
  t.equal(c.claimTurn('turn_1', 'B', 101, 50), undefined, 'a running turn is not claimed again');
  t.equal(c.takeOverTurn('turn_1', 'B', 149, 50), undefined, 'not taken over while the lease is alive');
  t.equal(c.renewTurnLease('turn_1', { owner: 'A', token: 1 }, 140, 50), true, 'A renews');
  t.equal(c.takeOverTurn('turn_1', 'B', 189, 50), undefined, 'still alive after the renewal');
  const b = c.takeOverTurn('turn_1', 'B', 190, 50)!;
  t.match(b, { owner: 'B', lease_expires_at: 240, fencing_token: 2 }, 'taken over once expired: token bumped');
  t.equal(c.takeOverTurn('turn_1', 'C', 200, 50), undefined, "B's fresh lease is not taken over");
  t.equal(c.renewTurnLease('turn_1', { owner: 'A', token: 1 }, 250, 50), false, 'A can no longer renew');
  t.equal(c.updateTurn('turn_1', ['running'], { steps: 5 }, { owner: 'A', token: 1 }), false, "A's late write is refused");
  t.equal(c.updateTurn('turn_1', ['running'], { steps: 1 }, { owner: 'B', token: 2 }), true, "B's write goes through");
  t.equal(c.turn('turn_1')?.steps, 1);
  t.equal(c.expireTurnLeases('A', 210), 0, "A's start frees only A's leases");
  t.equal(c.expireTurnLeases('B', 210), 1, "B's restart frees B's lease");
  t.equal(c.turn('turn_1')?.lease_expires_at, 210);
  t.equal(c.takeOverTurn('turn_1', 'B', 210, 50)?.fencing_token, 3, 'and takes it over at once');
  t.equal(c.expireTurnLeases(null, 220), 1, 'null frees every lease (SQLite: one gateway per database)');
  t.equal(c.updateTurn('turn_1', ['running'], { state: 'completed', finished_at: 230 }, { owner: 'B', token: 3 }), true);
  t.equal(c.takeOverTurn('turn_1', 'C', 1000, 50), undefined, 'an ended turn is not taken over');
}, PG_CLOCK);

forEachBackend(t, 'delivery claims (migration 20): due deliveries claimed once, a stale claim taken over after expiry, results written only under the claim', async (t: Test, { repos: s }) => {
  const c = s.conversations;
  c.insertInstance({ id: 'chan_1', plugin_id: 'tg', channel: 'telegram', name: 'bot', api_base: 'https://api', credential_secret: null, verify_secret: 'v', dm_policy: 'pairing', created_at: 1, updated_at: 1 });
  c.insertConversation(conv('conv_1', { channel: 'telegram' }));
  for (const n of [1, 2, 3]) {
    c.insertMessage(msg(`msg_${n}`, { role: 'assistant' }));
    c.insertDelivery({ id: `dlv_${n}`, instance_id: 'chan_1', conversation_id: 'conv_1', message_id: `msg_${n}`, chat_id: 'c1', thread_id: null, text: `t${n}`, state: 'pending', parts_sent: 0, receipts: '[]', attempts: 0, next_attempt_at: 10 * n, last_error: null, created_at: 1, updated_at: 1, finished_at: null });
  }
  t.same(c.claimDeliveries('A', 5, 100, 10), [], 'nothing due yet');
  const a = c.claimDeliveries('A', 20, 100, 10);
  t.same(a.map((d) => [d.id, d.claim_owner, d.claim_expires_at, d.claim_token]), [['dlv_1', 'A', 120, 1], ['dlv_2', 'A', 120, 1]], 'the due ones, oldest first');
  t.same(c.claimDeliveries('B', 30, 100, 10).map((d) => d.id), ['dlv_3'], 'a claimed delivery is not claimed again; B gets the one left');
  t.same(c.dueDeliveries(30, 10), [], 'claimed ones are not due');
  t.equal(c.nextDeliveryAt(), 120, 'the next wake-up is when the first claim expires');
  t.equal(c.renewDeliveryClaim('dlv_1', { owner: 'A', token: 1 }, 50, 100), true, 'A renews dlv_1');
  t.same(c.claimDeliveries('B', 120, 100, 10).map((d) => [d.id, d.claim_owner, d.claim_token]), [['dlv_2', 'B', 2]], "A's stale claim on dlv_2 is taken over once it expired");
  t.equal(c.updateDelivery('dlv_2', { parts_sent: 1, updated_at: 121 }, { owner: 'A', token: 1 }), false, "A's late write is refused");
  t.equal(c.updateDelivery('dlv_2', { state: 'delivered', finished_at: 122, updated_at: 122, claim_owner: null, claim_expires_at: null }, { owner: 'B', token: 2 }), true, 'B ends it under its claim');
  t.equal(c.updateDelivery('dlv_2', { state: 'failed' }, { owner: 'B', token: 2 }), false, 'an ended delivery takes no further write under a claim');
  t.equal(c.delivery('dlv_2')?.state, 'delivered');
  t.equal(c.updateDelivery('dlv_1', { attempts: 1, next_attempt_at: 200, claim_owner: null, claim_expires_at: null }, { owner: 'A', token: 1 }), true, 'a retry releases the claim');
  t.same(c.claimDeliveries('B', 199, 100, 10).map((d) => d.id), ['dlv_3'], "dlv_1 not before its backoff (B's own stale claim on dlv_3 is taken again)");
  t.same(c.claimDeliveries('B', 200, 100, 10).map((d) => [d.id, d.claim_token]), [['dlv_1', 2]], 'then any worker claims it');
  t.equal(c.delivery('dlv_3')?.claim_token, 2, 'claimed twice');
  t.equal(c.expireDeliveryClaims('A', 210), 0, "A's start frees only A's claims");
  t.equal(c.expireDeliveryClaims(null, 210), 2, 'null frees every claim');
  t.same(c.claimDeliveries('C', 210, 100, 10).map((d) => d.id), ['dlv_3', 'dlv_1']);
}, PG_CLOCK);
