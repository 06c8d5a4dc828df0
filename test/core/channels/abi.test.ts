// The channel ABI's host checks and webhook verification, table-tested without sockets
// (TESTPLAN K1 and K3): what a hostile adapter can return, and what a forged webhook looks like.
import t from 'tap';
import type { ChannelContribution } from '../../../schemas/index.js';
import { checkInboundResult, checkOutboundResult, outboundHeaders, outboundUrl } from '../../../core/channels/abi.js';
import { signHmac, signSlack, verifyWebhook } from '../../../core/channels/verify.js';

const CHANNEL: ChannelContribution = {
  id: 'chat',
  description: 'd',
  verify: { scheme: 'hmac_sha256' },
  inbound: { export: 'inbound' },
  outbound: { export: 'outbound', api_base: 'https://api.example.com/v1', paths: ['/send', '/x/{{credential}}'], destination: { chat: '/chat_id', thread: '/thread' } },
};
const INPUT = { text: 'hi', chat_id: '42', thread_id: null, text_limit: 100 };
const req = (body: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ requests: [{ method: 'POST', path: '/send', body, ...extra }] });

t.test('outbound: the conversation chat and thread are enforced at the manifest pointers', async (t) => {
  t.match(checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42', text: 'hi' })), [{ method: 'POST', path: '/send', body: { chat_id: '42' } }]);
  t.match(checkOutboundResult(CHANNEL, INPUT, req({ chat_id: 42, text: 'hi' })), [{ body: { chat_id: 42 } }], 'a numeric id equal to the chat is the chat');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '43', text: 'hi' })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'another chat');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ text: 'hi' })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'no chat');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42', thread: '9' })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'a thread when the conversation has none');
  t.throws(() => checkOutboundResult(CHANNEL, { ...INPUT, thread_id: '7' }, req({ chat_id: '42', thread: '8' })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'another thread');
  t.ok(checkOutboundResult(CHANNEL, { ...INPUT, thread_id: '7' }, req({ chat_id: '42', thread: 7 })));
  const two = { requests: [{ path: '/a', body: { chat_id: '42' } }, { path: '/b', body: { chat_id: '99' } }] };
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, two), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'every request is checked, not only the first');
});

t.test('outbound: paths stay under the API base; the credential goes only where the host puts it', async (t) => {
  for (const path of ['//evil.example/x', '/../admin', '/a/%2e%2e/b', 'http://evil.example/', '/a#frag', '/a\\b', '/a/./b', '/send?chat_id=666', '/send?text={{credential}}', '/x/{{credential}}/../send', '/setWebhook']) {
    t.throws(() => checkOutboundResult(CHANNEL, INPUT, { requests: [{ path, body: { chat_id: '42' } }] }), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, `path ${path}`);
  }
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42', token: '{{credential}}' })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'no credential in a body (it would reach the platform as content)');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42' }, { headers: { host: 'evil.example' } })), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' }, 'no Host header');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42' }, { headers: { 'x-a': 'a\r\nx-b: b' } })), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' }, 'no header injection');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42' }, { method: 'GET' })), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' });
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42' }, { path: '/x/{{secret:OTHER}}' })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'only listed paths, never another handle');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42' }, { headers: { 'x-token': '{{credential}}' } })), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'the credential only in Authorization');
  t.ok(checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42' }, { headers: { authorization: 'Bearer {{credential}}', 'content-type': 'application/json; charset=utf-8' } })));
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, req({ chat_id: '42', pad: '&chat_id=666&' }, { headers: { 'content-type': 'application/x-www-form-urlencoded' } })), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' }, 'a form content type would let the platform read another chat');
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, { requests: [] }), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' });
  t.throws(() => checkOutboundResult(CHANNEL, INPUT, { requests: Array.from({ length: 17 }, () => ({ path: '/s', body: { chat_id: '42' } })) }), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' });
  t.equal(outboundUrl('https://api.telegram.org', '/bot{{credential}}/sendMessage', '123:AB-c_d').toString(), 'https://api.telegram.org/bot123:AB-c_d/sendMessage');
  t.equal(outboundUrl('https://api.example.com/v1', '/send', null).toString(), 'https://api.example.com/v1/send', 'the base path is a prefix');
  t.equal(outboundUrl('https://api.example.com/v1', '/x/{{credential}}', 'a/../../b').origin, 'https://api.example.com', 'a hostile credential is encoded and cannot move the origin');
  t.throws(() => outboundUrl('https://api.example.com', '/{{credential}}', null), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' });
  t.same(outboundHeaders({ authorization: 'Bearer {{credential}}' }, 'xoxb-1'), { authorization: 'Bearer xoxb-1' });
});

t.test('inbound: normalised and bounded; bad shapes refused', async (t) => {
  const ok = checkInboundResult({ messages: [{ external_id: 5, sender: { id: 1, name: 'Ada' }, chat: { id: -100, kind: 'group' }, thread_id: null, text: 'x'.repeat(40_000) }] });
  t.match(ok.messages[0], { external_id: '5', sender: { id: '1', name: 'Ada' }, chat: { id: '-100', kind: 'group' }, thread_id: null });
  t.ok(ok.messages[0]!.text.endsWith('[cut: the message was longer]'));
  t.equal(ok.respond, null);
  t.same(checkInboundResult({ messages: [], respond: { body: { challenge: 'c' } } }).respond, { status: 200, body: { challenge: 'c' } });
  for (const bad of [null, [], { messages: {} }, { messages: [{ external_id: '', sender: { id: '1' }, chat: { id: '1', kind: 'direct' }, text: '' }] }, { messages: [{ external_id: '1', sender: { id: '1' }, chat: { id: '1', kind: 'channel' }, text: '' }] }, { messages: [], respond: { status: 302 } }, { messages: Array.from({ length: 101 }, () => ({})) }]) {
    t.throws(() => checkInboundResult(bad), { code: 'TYRUM_ERR_CHANNEL_ADAPTER' }, JSON.stringify(bad).slice(0, 60));
  }
});

t.test('webhook verification: Telegram secret token, Slack v0 with its window, HMAC with its window', async (t) => {
  const now = Date.UTC(2026, 0, 1);
  const secret = Buffer.from('s3cret-value');
  const body = Buffer.from('{"a":1}');
  t.same(verifyWebhook('telegram_secret_token', { 'x-telegram-bot-api-secret-token': 's3cret-value' }, body, secret, now), { ok: true });
  t.same(verifyWebhook('telegram_secret_token', { 'x-telegram-bot-api-secret-token': 's3cret-valuf' }, body, secret, now), { ok: false, reason: 'bad_signature' });
  t.same(verifyWebhook('telegram_secret_token', {}, body, secret, now), { ok: false, reason: 'missing_header' });
  t.same(verifyWebhook('slack_v0', signSlack(secret, body, now), body, secret, now), { ok: true });
  t.same(verifyWebhook('slack_v0', signSlack(secret, body, now - 301_000), body, secret, now), { ok: false, reason: 'stale_timestamp' }, 'replayed after 5 minutes');
  t.same(verifyWebhook('slack_v0', signSlack(secret, body, now + 301_000), body, secret, now), { ok: false, reason: 'stale_timestamp' }, 'from the future');
  t.same(verifyWebhook('slack_v0', signSlack(secret, body, now - 500_000), body, secret, now, 900), { ok: true }, 'a wider window when the manifest says so');
  t.same(verifyWebhook('slack_v0', signSlack('other', body, now), body, secret, now), { ok: false, reason: 'bad_signature' });
  t.same(verifyWebhook('slack_v0', { ...signSlack(secret, body, now), 'x-slack-request-timestamp': '1e9' }, body, secret, now), { ok: false, reason: 'bad_timestamp' });
  t.same(verifyWebhook('hmac_sha256', signHmac(secret, body, now), body, secret, now), { ok: true });
  t.same(verifyWebhook('hmac_sha256', signHmac(secret, body, now), Buffer.from('{"a":2}'), secret, now), { ok: false, reason: 'bad_signature' }, 'another body');
  t.same(verifyWebhook('hmac_sha256', { 'x-tyrum-signature': signHmac(secret, body, now)['x-tyrum-signature'] }, body, secret, now), { ok: false, reason: 'missing_header' }, 'no timestamp');
  t.same(verifyWebhook('hmac_sha256', { 'x-tyrum-signature': ['a', 'b'], 'x-tyrum-timestamp': '1' }, body, secret, now), { ok: false, reason: 'missing_header' }, 'a repeated header is not a signature');
});
