// The generic signed webhook channel plugin, built from source (plugins/webhook) and run in a real
// SandboxPool: simple JSON messages in, one JSON request per reply out, every answer passed through
// the host's checks (core/channels/abi.ts), and the reply delivered, signed, to a mock receiver.
import t from 'tap';
import { checkOutboundResult } from '../../core/channels/abi.js';
import { signHmac } from '../../core/channels/verify.js';
import { validate } from '../../core/protocol/validate.js';
import { impliedRisks } from '../../manifests/capabilities.js';
import { parseManifest } from '../../manifests/index.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxReason } from '../../sandbox/index.js';
import { startMockReceiver } from '../helpers/mock-chat.js';
import { channelHarness, deliver, fixture } from './channels-harness.js';
import { sha256 } from './helpers.js';

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const hook = await channelHarness('webhook', pool);
const fx = (name: string): string => fixture('webhook', name);

t.test('the build directory is an installable channel plugin that asks for nothing', async (t) => {
  const m = hook.plugin.manifest;
  t.same(validate(PluginManifest, m), []);
  t.doesNotThrow(() => parseManifest(Buffer.from(JSON.stringify(m))));
  t.equal(m.wasm.sha256, sha256(hook.plugin.wasm));
  t.same(m.contributes.tools, []);
  t.match(hook.channel, {
    id: 'webhook',
    verify: { scheme: 'hmac_sha256' },
    outbound: { paths: [''], api_base: 'https://example.invalid/webhook', destination: { chat: '/chat_id', thread: '/thread_id' }, sign: 'hmac_sha256' },
    text_limit: 100000,
  });
  t.equal(m.requests, undefined);
  t.same(impliedRisks(m), []);
});

t.test('one message in is one message out, with its thread and sender name', async (t) => {
  t.same(await hook.inbound(fx('single')), {
    messages: [{ external_id: 'msg-2024-0001', sender: { id: 'user-17', name: 'Ada Lovelace' }, chat: { id: 'room-ops', kind: 'group' }, thread_id: 'incident-42', text: 'Status of incident 42?' }],
    respond: null,
  });
});

t.test('the chat kind defaults to direct, and numeric ids are taken as their decimal text', async (t) => {
  t.same((await hook.inbound(fx('minimal'))).messages, [{ external_id: '1001', sender: { id: '17', name: null }, chat: { id: 'dm-17', kind: 'direct' }, thread_id: null, text: 'hello' }]);
});

t.test('the messages[] form carries several; malformed ones are left out and the sender is told which and why', async (t) => {
  const r = await hook.inbound(fx('batch'));
  t.same(r.messages, [
    { external_id: 'm-1', sender: { id: 'u-1', name: 'Grace' }, chat: { id: 'c-1', kind: 'direct' }, thread_id: null, text: 'first' },
    { external_id: 'm-2', sender: { id: 'u-2', name: null }, chat: { id: 'c-2', kind: 'group' }, thread_id: 't-9', text: 'second ✨' },
  ]);
  t.match(r.respond, {
    status: 200,
    body: {
      ok: true,
      messages: 2,
      ignored: [
        { index: 2, reason: /"id" must be a string/ },
        { index: 3, reason: '"chat.kind" must be "direct" or "group"' },
        { index: 4, reason: '"text" must be a string' },
      ],
    },
  });
  t.same((await hook.inbound({ messages: [] })).messages, [], 'an empty list is fine');
  t.match((await hook.inbound({ hello: 'world' })).respond, { body: { ok: true, messages: 0, ignored: [{ index: 0 }] } }, 'an unknown shape is no message, not an error');
  t.match((await hook.inbound('[1, 2]')).respond, { body: { ignored: [{ reason: /must be a JSON object/ }] } });
});

t.test('a body that is not JSON is a plugin error', async (t) => {
  const err = await hook.refused('inbound', { headers: {}, body: '{"id": "m-1", "text": "unterminated', instance: 'test' });
  t.equal(sandboxReason(err), 'plugin_error');
  t.match(err.message, /the webhook body is not JSON/);
});

t.test('a reply is one POST to the configured URL itself with chat_id, thread_id (null outside a thread) and text', async (t) => {
  t.same(await hook.outbound({ text: 'Incident 42 is resolved.', chat_id: 'room-ops', thread_id: 'incident-42' }), [
    { method: 'POST', path: '', headers: { 'content-type': 'application/json' }, body: { chat_id: 'room-ops', thread_id: 'incident-42', text: 'Incident 42 is resolved.' } },
  ]);
  const input = { text: 'hi', chat_id: 'dm-17', thread_id: null, text_limit: 100000 };
  const reqs = await hook.outbound(input);
  t.same(reqs[0]?.body, { chat_id: 'dm-17', thread_id: null, text: 'hi' });
  t.throws(() => checkOutboundResult(hook.channel, { ...input, thread_id: 't-1' }, { requests: reqs }), { code: 'TYRUM_ERR_CHANNEL_DESTINATION' }, 'the host refuses it for a thread it does not name');
  const long = 'Ünïcödé 🙂 '.repeat(8000);
  const one = await hook.outbound({ text: long, chat_id: 'dm-17' });
  t.equal(one.length, 1, `${long.length} units fit the 100,000 limit: one request`);
  t.equal(one[0]?.body.text, long);
});

t.test('the reply delivered with the host\'s signature verifies at the receiver', async (t) => {
  const secret = 'whsec_test_0123456789';
  const receiver = await startMockReceiver({ secret });
  t.teardown(() => receiver.close());
  const reqs = await hook.outbound({ text: 'Signed reply ✅', chat_id: 'room-ops', thread_id: 'incident-42' });
  const [ok] = await deliver(receiver.url, null, reqs, (body) => signHmac(secret, body, Date.now()));
  t.same(ok?.body, { ok: true });
  t.match(receiver.requests[0], { method: 'POST', path: '/hook', body: { chat_id: 'room-ops', thread_id: 'incident-42', text: 'Signed reply ✅' }, verified: { ok: true } });
  const [bad] = await deliver(receiver.url, null, reqs, (body) => signHmac('another secret', body, Date.now()));
  t.equal(bad?.status, 401);
  t.match(receiver.requests[1], { verified: { ok: false, reason: 'bad_signature' } });
  receiver.failNext(1, 429, { retryAfter: 2 });
  const [limited] = await deliver(receiver.url, null, reqs, (body) => signHmac(secret, body, Date.now()));
  t.equal(limited?.status, 429);
  t.equal(limited?.headers.get('retry-after'), '2');
});
