// The telegram channel plugin, built from source (plugins/telegram) and run in a real SandboxPool:
// recorded-style Bot API updates in, sendMessage requests out, every answer passed through the
// host's checks (core/channels/abi.ts), and the requests delivered to a mock Bot API.
import t from 'tap';
import { checkOutboundResult } from '../../core/channels/abi.js';
import { validate } from '../../core/protocol/validate.js';
import { impliedRisks } from '../../manifests/capabilities.js';
import { parseManifest, readPluginSource } from '../../manifests/index.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxReason } from '../../sandbox/index.js';
import { startMockTelegram, telegramUpdate } from '../helpers/mock-chat.js';
import { channelHarness, deliver, fixture } from './channels-harness.js';
import { readSourceManifest, sha256 } from './helpers.js';

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const tg = await channelHarness('telegram', pool);
const fx = (name: string): string => fixture('telegram', name);

/** No lone surrogate: every high surrogate is followed by a low one and every low one preceded by a high one. */
function wellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

t.test('the build directory is an installable channel plugin that asks for nothing', async (t) => {
  const m = tg.plugin.manifest;
  t.same(validate(PluginManifest, m), [], 'build/tyrum.plugin.json satisfies the manifest contract');
  t.doesNotThrow(() => parseManifest(Buffer.from(JSON.stringify(m))), 'and the manifest rules');
  t.equal(m.wasm.sha256, sha256(tg.plugin.wasm), 'the digest is the digest of build/plugin.wasm');
  const source = readSourceManifest('telegram');
  t.same(source.wasm, { path: 'build/plugin.wasm', sha256: '0'.repeat(64) }, 'the source keeps the build path and a placeholder digest');
  t.match(m, { id: 'telegram', publisher: 'Tyrum', license: 'Apache-2.0', engines: { tyrum: '^1.0.0' } });
  t.same(m.contributes.tools, [], 'no tools');
  t.equal(m.contributes.channels?.length, 1, 'one channel');
  t.match(tg.channel, {
    id: 'telegram',
    verify: { scheme: 'telegram_secret_token' },
    outbound: { paths: ['/bot{{credential}}/sendMessage'], api_base: 'https://api.telegram.org', destination: { chat: '/chat_id', thread: '/message_thread_id' }, ok_pointer: '/ok', receipt_pointer: '/result/message_id' },
    text_limit: 4096,
  });
  t.equal(m.requests, undefined, 'no egress, no secrets, no storage');
  t.same(impliedRisks(m), [], 'and no risk');
  t.equal((await readPluginSource(tg.plugin.dir)).manifest.id, 'telegram', 'readPluginSource accepts build/');
});

t.test('the module imports only the Extism kernel and env.abort', async (t) => {
  const info = await pool.load('telegram-inspect', { wasm: tg.plugin.wasm, expectedSha256: tg.plugin.manifest.wasm.sha256, exports: ['inbound', 'outbound'] });
  for (const imp of info.imports) t.ok(imp.startsWith('extism:host/env.') || imp === 'env.abort', `allowed import ${imp}`);
  t.notOk(info.imports.some((i) => i.startsWith('extism:host/env.http') || i.startsWith('tyrum:host/v1.')), 'no network, no storage');
});

t.test('a text message in a private chat becomes one direct message keyed by the update id', async (t) => {
  const r = await tg.inbound(fx('private-text'));
  t.same(r, {
    messages: [
      {
        external_id: '871234501',
        sender: { id: '123456789', name: 'Ada Lovelace' },
        chat: { id: '123456789', kind: 'direct' },
        thread_id: null,
        text: "What's on my calendar tomorrow? 📅",
      },
    ],
    respond: null,
  });
});

t.test('a text message in a supergroup is a group message with a negative chat id kept exactly', async (t) => {
  const r = await tg.inbound(fx('group-text'));
  t.same(r.messages, [
    {
      external_id: '871234502',
      sender: { id: '987654321', name: 'Grace' },
      chat: { id: '-1001987654321', kind: 'group' },
      thread_id: null,
      text: '@tyrum_bot summarize the incident, please',
    },
  ]);
  const basic = await tg.inbound(fx('username-only'));
  t.match(basic.messages, [{ sender: { id: '555000111', name: '@anon_user' }, chat: { id: '-4012345678', kind: 'group' } }], 'a basic group; no first name: the @username');
});

t.test('a message in a forum topic carries the topic as its thread; a reply in an ordinary supergroup does not', async (t) => {
  const forum = await tg.inbound(fx('forum-topic'));
  t.match(forum.messages, [{ external_id: '871234503', chat: { id: '-1001122334455', kind: 'group' }, thread_id: '3301', text: 'Draft the release notes for 2.4' }]);
  const reply = await tg.inbound(fx('reply-in-supergroup'));
  t.equal(reply.messages.length, 1);
  t.equal(reply.messages[0]?.thread_id, null, 'message_thread_id of a plain reply is not a topic (sendMessage would refuse it)');
});

t.test('messages from bots are skipped', async (t) => {
  t.same(await tg.inbound(fx('bot-message')), { messages: [], respond: null });
  t.same((await tg.inbound(telegramUpdate({ update_id: 5, chat_id: -100123, from_id: 99, text: 'beep', is_bot: true }))).messages, []);
});

t.test('updates that are not a text message are skipped without an error', async (t) => {
  for (const name of ['photo', 'edited-message', 'my-chat-member', 'channel-post']) {
    t.same(await tg.inbound(fx(name)), { messages: [], respond: null }, name);
  }
  const odd: unknown[] = [{}, [], 'update', 42, null, { update_id: 1 }, { update_id: 1, message: 'text' }, { update_id: 'x y', message: { text: 'a' } }, { update_id: 2, message: { text: 'no sender', chat: { id: 1, type: 'private' } } }, { update_id: 3, callback_query: { id: '1', data: 'x' } }];
  for (const body of odd) t.same((await tg.inbound(JSON.stringify(body))).messages, [], `ignored: ${JSON.stringify(body)}`);
});

t.test('a body that is not JSON is a plugin error; so is an input that is not the ABI', async (t) => {
  await t.rejects(tg.inboundRaw('{"update_id": 1, "message": '), 'a truncated body');
  const err = await tg.refused('inbound', { headers: {}, body: 'not json', instance: 'test' });
  t.equal(sandboxReason(err), 'plugin_error');
  t.match(err.message, /the webhook body is not JSON/);
  const bad = await tg.refused('inbound', { headers: {}, body: { update_id: 1 }, instance: 'test' });
  t.match(bad.message, /"body" \(the raw webhook body\) must be a string/);
  const out = await tg.refused('outbound', { text: 'hi', chat_id: '1', thread_id: null });
  t.match(out.message, /"text_limit" must be a positive integer/);
  t.same((await tg.inbound(fx('private-text'))).messages.length, 1, 'the instance still answers');
});

t.test('the mock-chat telegramUpdate builder produces updates the plugin reads as Telegram would send them', async (t) => {
  const dm = await tg.inbound(telegramUpdate({ update_id: 10, chat_id: 42, from_id: 42, text: '/start', first_name: 'Lin', last_name: 'Qi' }));
  t.same(dm.messages, [{ external_id: '10', sender: { id: '42', name: 'Lin Qi' }, chat: { id: '42', kind: 'direct' }, thread_id: null, text: '/start' }]);
  const topic = await tg.inbound(telegramUpdate({ update_id: 11, chat_id: -1009, from_id: 42, text: 'in a topic', thread_id: 77 }));
  t.match(topic.messages, [{ chat: { id: '-1009', kind: 'group' }, thread_id: '77' }]);
});

t.test('a short reply is one sendMessage with the chat id as given and the token left to the host', async (t) => {
  const reqs = await tg.outbound({ text: 'Tomorrow: 10:00 stand-up ☕', chat_id: '123456789' });
  t.same(reqs, [
    {
      method: 'POST',
      path: '/bot{{credential}}/sendMessage',
      headers: { 'content-type': 'application/json' },
      body: { chat_id: '123456789', text: 'Tomorrow: 10:00 stand-up ☕' },
    },
  ]);
});

t.test('a reply in a forum topic names the topic at the destination pointer; the host refuses it for another thread', async (t) => {
  const input = { text: 'Release notes drafted.', chat_id: '-1001122334455', thread_id: '3301', text_limit: 4096 };
  const reqs = await tg.outbound(input);
  t.same(reqs[0]?.body, { chat_id: '-1001122334455', text: 'Release notes drafted.', message_thread_id: 3301 }, 'message_thread_id is the Integer the Bot API documents');
  const raw = await tg.outboundRaw(input);
  t.throws(() => checkOutboundResult(tg.channel, { ...input, thread_id: '9999' }, raw), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'another topic');
  t.throws(() => checkOutboundResult(tg.channel, { ...input, thread_id: null }, raw), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'no topic');
  t.throws(() => checkOutboundResult(tg.channel, { ...input, chat_id: '-100777' }, raw), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'another chat');
  const plain = await tg.outbound({ text: 'x', chat_id: '-1001987654321' });
  t.notOk('message_thread_id' in (plain[0]?.body ?? {}), 'no thread: no message_thread_id at all');
});

t.test('a long reply is split into parts of at most 4096 units at paragraph boundaries, the whole text preserved', async (t) => {
  const para = (n: number, word: string): string => Array.from({ length: n }, () => word).join(' ');
  const text = [para(500, 'alpha😀'), para(400, 'beta'), para(700, 'gamma👩‍👩‍👧'), para(90, 'delta')].join('\n\n');
  t.ok(text.length > 3 * 4096, `${text.length} UTF-16 units`);
  const reqs = await tg.outbound({ text, chat_id: '42' });
  const parts = reqs.map((r) => r.body.text as string);
  t.ok(parts.length >= 3 && parts.length <= 5, `${parts.length} parts`);
  t.equal(parts.join(''), text, 'concatenated, the parts are the text');
  for (const [i, p] of parts.entries()) {
    t.ok(p.length <= 4096, `part ${i} has ${p.length} units`);
    t.ok(wellFormed(p), `part ${i} has no broken surrogate pair`);
    t.notOk(p.startsWith('\u200d') || p.endsWith('\u200d'), `part ${i} does not cut a ZWJ sequence`);
  }
  t.ok(parts[0]?.endsWith('\n\n'), 'the first part ends at a paragraph break');
  t.ok(reqs.every((r) => r.body.chat_id === '42' && r.path === '/bot{{credential}}/sendMessage'), 'every part goes to the same chat');
});

t.test('text without spaces is cut hard, never inside a character or an emoji sequence', async (t) => {
  const segmenter = new Intl.Segmenter('en', { granularity: 'grapheme' });
  for (const unit of ['😀', 'a😀', '👨‍👩‍👧‍👦', '👨‍👩‍👧‍👦x', '🇺🇦', 'x🇺🇦', '👍🏽', 'e\u0301', '1️⃣', '❤️']) {
    const text = unit.repeat(Math.ceil(9000 / unit.length));
    const parts = (await tg.outbound({ text, chat_id: '42' })).map((r) => r.body.text as string);
    t.equal(parts.join(''), text, `${unit}: preserved`);
    t.ok(parts.every((p) => p.length <= 4096 && wellFormed(p)), `${unit}: ${parts.map((p) => p.length).join(', ')} units, well-formed`);
    const boundaries = new Set([...segmenter.segment(text)].map((g) => g.index));
    let at = 0;
    for (const p of parts.slice(0, -1)) {
      at += p.length;
      t.ok(boundaries.has(at), `${unit}: the cut at ${at} is between two characters as a reader sees them`);
    }
  }
  const lines = Array.from({ length: 300 }, (_, i) => `line ${i}: ${'x'.repeat(40)}`).join('\n');
  const parts = (await tg.outbound({ text: lines, chat_id: '42' })).map((r) => r.body.text as string);
  t.ok(parts.slice(0, -1).every((p) => p.endsWith('\n')), 'without paragraphs, at line breaks');
  t.equal(parts.join(''), lines);
});

t.test('a reply longer than 16 messages is cut: 16 requests, the last one marked', async (t) => {
  const text = 'word '.repeat(20_000);
  const reqs = await tg.outbound({ text, chat_id: '42' });
  t.equal(reqs.length, 16, 'the host limit of requests per reply');
  const last = reqs[15]?.body.text as string;
  t.ok(last.endsWith('[…truncated]'), 'the last part says so');
  t.ok(reqs.every((r) => (r.body.text as string).length <= 4096));
  t.ok(text.startsWith(reqs.slice(0, 15).map((r) => r.body.text as string).join('')), 'the other parts are the start of the text');
});

t.test('the requests delivered to a Bot API answer ok with the message id at the receipt pointer', async (t) => {
  const token = '7000000001:AAE-test_token_value';
  const api = await startMockTelegram({ token });
  t.teardown(() => api.close());
  const reqs = await tg.outbound({ text: 'Hello from Tyrum 👋', chat_id: '-1001122334455', thread_id: '3301' });
  const [res] = await deliver(api.url, token, reqs);
  t.equal(res?.status, 200);
  t.match(res?.body, { ok: true, result: { message_id: 100, message_thread_id: 3301, text: 'Hello from Tyrum 👋' } });
  t.same(api.sent, [{ message_id: 100, chat_id: '-1001122334455', text: 'Hello from Tyrum 👋', message_thread_id: 3301 }]);
  t.equal(api.requests[0]?.path, `/bot${token}/sendMessage`, 'the token in the path, put there by the host (as it is: a Telegram token is path-safe)');

  const [denied] = await deliver(api.url, 'wrong', reqs);
  t.same({ status: denied?.status, body: denied?.body }, { status: 401, body: { ok: false, error_code: 401, description: 'Unauthorized' } });

  api.failNext(1, 429, { retryAfter: 3 });
  const [limited] = await deliver(api.url, token, reqs);
  t.equal(limited?.status, 429);
  t.equal(limited?.headers.get('retry-after'), '3');
  t.match(limited?.body, { ok: false, error_code: 429, parameters: { retry_after: 3 } });
  const [again] = await deliver(api.url, token, reqs);
  t.match(again?.body, { ok: true, result: { message_id: 101 } }, 'served again after the injected failure');
  t.equal(api.served().length, 3, 'three served (one refused for its token), one failed on purpose');
});
