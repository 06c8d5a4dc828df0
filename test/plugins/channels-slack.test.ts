// The slack channel plugin, built from source (plugins/slack) and run in a real SandboxPool:
// recorded-style Events API requests in, chat.postMessage requests out, every answer passed through
// the host's checks (core/channels/abi.ts), and the requests delivered to a mock Web API.
import t from 'tap';
import { checkOutboundResult } from '../../core/channels/abi.js';
import { validate } from '../../core/protocol/validate.js';
import { impliedRisks } from '../../manifests/capabilities.js';
import { parseManifest } from '../../manifests/index.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxReason } from '../../sandbox/index.js';
import { slackEvent, slackUrlVerification, startMockSlack } from '../helpers/mock-chat.js';
import { channelHarness, deliver, fixture } from './channels-harness.js';
import { readSourceManifest, sha256 } from './helpers.js';

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const slack = await channelHarness('slack', pool);
const fx = (name: string): string => fixture('slack', name);

t.test('the build directory is an installable channel plugin that asks for nothing', async (t) => {
  const m = slack.plugin.manifest;
  t.same(validate(PluginManifest, m), [], 'build/tyrum.plugin.json satisfies the manifest contract');
  t.doesNotThrow(() => parseManifest(Buffer.from(JSON.stringify(m))), 'and the manifest rules');
  t.equal(m.wasm.sha256, sha256(slack.plugin.wasm));
  t.same(readSourceManifest('slack').wasm, { path: 'build/plugin.wasm', sha256: '0'.repeat(64) });
  t.same(m.contributes.tools, []);
  t.match(slack.channel, {
    id: 'slack',
    verify: { scheme: 'slack_v0' },
    outbound: { paths: ['/chat.postMessage'], api_base: 'https://slack.com/api', destination: { chat: '/channel', thread: '/thread_ts' }, ok_pointer: '/ok', receipt_pointer: '/ts' },
    text_limit: 4000,
  });
  t.equal(slack.channel.inbound.headers, undefined, 'no request header is needed');
  t.equal(m.requests, undefined, 'no egress, no secrets, no storage');
  t.same(impliedRisks(m), []);
});

t.test('url_verification answers the challenge and carries no message', async (t) => {
  t.same(await slack.inbound(fx('url-verification')), { messages: [], respond: { status: 200, body: { challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' } } });
  t.same((await slack.inbound(slackUrlVerification('c-"quoted"-✓'))).respond, { status: 200, body: { challenge: 'c-"quoted"-✓' } }, 'any challenge text, escaped');
});

t.test('a top-level channel message is a group message whose thread is the message itself, text unescaped', async (t) => {
  t.same(await slack.inbound(fx('message-channel')), {
    messages: [
      {
        external_id: 'C0789ABCD:1717000000.123456',
        sender: { id: 'U0ADA0001', name: null },
        chat: { id: 'C0789ABCD', kind: 'group' },
        thread_id: '1717000000.123456',
        text: 'Can you check why the deploy & the tests failed? <see #ops>',
      },
    ],
    respond: null,
  });
});

t.test('a reply in a thread keeps the thread it was posted in', async (t) => {
  const r = await slack.inbound(fx('message-thread-reply'));
  t.match(r.messages, [{ external_id: 'C0789ABCD:1717000100.000200', sender: { id: 'U0GRACE02' }, chat: { id: 'C0789ABCD', kind: 'group' }, thread_id: '1717000000.123456', text: 'and what about staging?' }]);
});

t.test('a direct message (im) is direct and has no thread', async (t) => {
  t.same((await slack.inbound(fx('message-im'))).messages, [
    { external_id: 'D0ADAIM01:1717000200.000300', sender: { id: 'U0ADA0001', name: null }, chat: { id: 'D0ADAIM01', kind: 'direct' }, thread_id: null, text: 'remind me what we decided about the budget 💸' },
  ]);
  const threaded = await slack.inbound(slackEvent({ event_id: 'Ev1', channel: 'D0ADAIM01', user: 'U1', text: 'in a DM thread', thread_ts: '1717000000.000001' }));
  t.match(threaded.messages, [{ chat: { kind: 'direct' }, thread_id: '1717000000.000001' }], 'a thread inside a DM stays a thread');
});

t.test('an app mention is a message, in the thread it starts', async (t) => {
  t.same((await slack.inbound(fx('app-mention'))).messages, [
    { external_id: 'C0789ABCD:1717000300.000400', sender: { id: 'U0GRACE02', name: null }, chat: { id: 'C0789ABCD', kind: 'group' }, thread_id: '1717000300.000400', text: '<@U0TYRUMBOT> open an incident for the outage' },
  ]);
});

t.test('bot posts, the app\'s own replies, edits and other events are skipped without an error', async (t) => {
  for (const name of ['bot-message', 'own-reply', 'message-changed', 'reaction-added', 'app-rate-limited']) {
    t.same(await slack.inbound(fx(name)), { messages: [], respond: null }, name);
  }
  for (const body of [{}, [], 'x', { type: 'event_callback' }, { type: 'event_callback', event_id: 'Ev9', event: { type: 'message', channel: 'C1', ts: '1.2' } }, { type: 'block_actions', actions: [] }]) {
    t.same((await slack.inbound(JSON.stringify(body))).messages, [], `ignored: ${JSON.stringify(body)}`);
  }
});

t.test('a body that is not JSON is a plugin error', async (t) => {
  const err = await slack.refused('inbound', { headers: {}, body: 'payload=%7B%22type%22%3A%22block_actions%22%7D', instance: 'test' });
  t.equal(sandboxReason(err), 'plugin_error');
  t.match(err.message, /the webhook body is not JSON/);
});

t.test('the mock-chat slackEvent builder produces envelopes the plugin reads', async (t) => {
  const r = await slack.inbound(slackEvent({ event_id: 'Ev0B1', channel: 'C0B1', user: 'U0B1', text: 'hello', ts: '1717001000.000100' }));
  t.same(r.messages, [{ external_id: 'C0B1:1717001000.000100', sender: { id: 'U0B1', name: null }, chat: { id: 'C0B1', kind: 'group' }, thread_id: '1717001000.000100', text: 'hello' }]);
});

t.test('a reply is chat.postMessage in the conversation\'s thread, with the bot token left to the host', async (t) => {
  const input = { text: 'Deploy failed: 2 < 3 & "tests" > 0', chat_id: 'C0789ABCD', thread_id: '1717000000.123456', text_limit: 4000 };
  t.same(await slack.outbound(input), [
    {
      method: 'POST',
      path: '/chat.postMessage',
      headers: { authorization: 'Bearer {{credential}}', 'content-type': 'application/json; charset=utf-8' },
      body: { channel: 'C0789ABCD', text: 'Deploy failed: 2 &lt; 3 &amp; "tests" &gt; 0', thread_ts: '1717000000.123456' },
    },
  ], '&, < and > escaped, as Slack requires for plain text');
  const raw = await slack.outboundRaw(input);
  t.throws(() => checkOutboundResult(slack.channel, { ...input, thread_id: '1.2' }, raw), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'the host refuses it for another thread');
  t.throws(() => checkOutboundResult(slack.channel, { ...input, chat_id: 'C0OTHER' }, raw), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'and for another channel');
  const dm = await slack.outbound({ text: 'noted', chat_id: 'D0ADAIM01' });
  t.same(dm[0]?.body, { channel: 'D0ADAIM01', text: 'noted' }, 'a DM reply has no thread_ts');
});

t.test('a long reply is split into parts of at most 4000 characters, in the same thread', async (t) => {
  const text = Array.from({ length: 120 }, (_, i) => `Step ${i + 1}: ${'check the logs and restart the worker. '.repeat(3)}`).join('\n');
  const reqs = await slack.outbound({ text, chat_id: 'C0789ABCD', thread_id: '1717000000.123456' });
  t.ok(reqs.length >= 4, `${reqs.length} parts`);
  t.equal(reqs.map((r) => r.body.text).join(''), text);
  t.ok(reqs.every((r) => (r.body.text as string).length <= 4000 && r.body.thread_ts === '1717000000.123456' && r.body.channel === 'C0789ABCD'));
});

t.test('the requests delivered to the Web API answer ok with the message ts at the receipt pointer', async (t) => {
  const token = 'xoxb-test-0000000000-token';
  const api = await startMockSlack({ token });
  t.teardown(() => api.close());
  const reqs = await slack.outbound({ text: 'On it.', chat_id: 'C0789ABCD', thread_id: '1717000000.123456' });
  const [ok] = await deliver(api.url, token, reqs);
  t.match(ok, { status: 200, body: { ok: true, channel: 'C0789ABCD', ts: '1700000000.000100' } });
  t.same(api.sent, [{ ts: '1700000000.000100', channel: 'C0789ABCD', text: 'On it.', thread_ts: '1717000000.123456' }]);
  t.equal(api.requests[0]?.headers.authorization, `Bearer ${token}`, 'the host put the token in the header');
  const [denied] = await deliver(api.url, 'xoxb-wrong', reqs);
  t.same(denied?.body, { ok: false, error: 'invalid_auth' });
  api.failNext(2, 503);
  const failed = await deliver(api.url, token, [...reqs, ...reqs, ...reqs]);
  t.same(failed.map((r) => r.status), [503, 503, 200], 'the next two fail, then it serves again');
});

t.test('a mention delivered twice (as message and as app_mention, two event ids) is one message: one dedupe key', async (t) => {
  const asMessage = await slack.inbound(slackEvent({ event_id: 'EvA', channel: 'C1', user: 'U1', text: '<@UBOT> hi', ts: '1717002000.000100' }));
  const asMention = await slack.inbound({ ...slackEvent({ event_id: 'EvB', channel: 'C1', user: 'U1', text: '<@UBOT> hi', ts: '1717002000.000100' }), event: { type: 'app_mention', channel: 'C1', user: 'U1', text: '<@UBOT> hi', ts: '1717002000.000100' } });
  t.equal(asMessage.messages[0]!.external_id, asMention.messages[0]!.external_id);
  t.equal(asMessage.messages[0]!.external_id, 'C1:1717002000.000100');
});
