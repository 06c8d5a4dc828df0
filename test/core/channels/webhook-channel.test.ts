// The generic signed webhook channel through the gateway: an HMAC-signed inbound message starts a
// turn; the reply goes to the instance's URL signed the same way (the receiver verifies it); an
// unsigned or stale request is 401; the open DM policy lets a new sender talk at once while a
// group chat hears only allowed senders; a message in a thread keeps its own conversation.
import t from 'tap';
import { signHmac } from '../../../core/channels/verify.js';
import { listAudit } from '../../../core/audit/index.js';
import { startTestGateway, removeHome } from '../../helpers/gateway.js';
import { startMockReceiver } from '../../helpers/mock-chat.js';
import { startMockOpenAi } from '../../helpers/mock-openai.js';
import { setBackend } from '../../../core/conversations/settings.js';

const WEBHOOK = new URL('../../../plugins/webhook/build/', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };
const SHARED = 'shared-hmac-secret-for-tests';

async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('a signed webhook message is answered with a signed request to the configured URL', async (t) => {
  const receiver = await startMockReceiver({ secret: SHARED, path: '/hook' });
  const model = await startMockOpenAi({ script: [{ content: 'Reply one.' }, { content: 'Reply two.' }] });
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    await receiver.close();
    await model.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(WEBHOOK, CLI);
  await gw.plugins.grant('webhook', { allRequested: true, acceptRisks: [] }, CLI);
  await gw.plugins.enable('webhook', CLI);
  gw.secrets.set('HOOK_SECRET', Buffer.from(SHARED), [], { localOnly: true });
  setBackend(gw.store, gw.secrets, { baseUrl: model.url, model: 'scripted' });
  gw.channels.add({ plugin: 'webhook', name: 'crm', apiBase: `${receiver.url}`, verifySecret: 'HOOK_SECRET', dmPolicy: 'open' });
  const post = (msg: Record<string, unknown>, headers?: Record<string, string>) => {
    const body = JSON.stringify(msg);
    return fetch(`http://127.0.0.1:${gw.port}/channels/webhook/crm/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', ...(headers ?? signHmac(SHARED, body, Date.now())) }, body });
  };

  const unsigned = await post({ id: 'm0', sender: { id: 'u1' }, chat: { id: 'c1' }, text: 'hi' }, {});
  t.equal(unsigned.status, 401);
  const stale = JSON.stringify({ id: 'm0', sender: { id: 'u1' }, chat: { id: 'c1' }, text: 'hi' });
  t.equal((await post(JSON.parse(stale) as Record<string, unknown>, signHmac(SHARED, stale, Date.now() - 3_600_000))).status, 401, 'an hour-old signature');

  // dm_policy open: a new sender in a direct chat is heard at once.
  t.equal((await post({ id: 'm1', sender: { id: 'u1', name: 'Ula' }, chat: { id: 'c1', kind: 'direct' }, text: 'first question' })).status, 200);
  await until('the first reply', () => receiver.served().length > 0);
  const first = receiver.served()[0]!;
  t.ok(first.verified?.ok, 'the reply is signed with the shared secret');
  t.match(first.body, { chat_id: 'c1', thread_id: null, text: 'Reply one.' });
  t.equal(first.path, '/hook', 'to the configured URL');

  // A group chat: an unknown sender is not heard, whatever the DM policy.
  t.equal((await post({ id: 'm2', sender: { id: 'u2' }, chat: { id: 'g1', kind: 'group' }, text: 'me too' })).status, 200);
  // A thread is its own conversation.
  t.equal((await post({ id: 'm3', sender: { id: 'u1' }, chat: { id: 'c1', kind: 'direct' }, thread_id: 't9', text: 'in a thread' })).status, 200);
  await until('the second reply', () => receiver.served().length > 1);
  t.match(receiver.served()[1]!.body, { chat_id: 'c1', thread_id: 't9', text: 'Reply two.' });
  await new Promise((r) => setTimeout(r, 200));
  t.equal(model.requests.length, 2, 'the group message of an unknown sender started no turn');
  t.same(
    gw.conversations
      .list(10)
      .map((c) => [c.account, c.thread])
      .sort(),
    [
      ['c1', ''],
      ['c1', 't9'],
    ],
    'one conversation per chat and thread',
  );
});

t.test('an authentic webhook the adapter cannot parse is acknowledged (no retry storm) and audited; a secret stored with a trailing newline verifies', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(WEBHOOK, CLI);
  await gw.plugins.grant('webhook', { allRequested: true, acceptRisks: [] }, CLI);
  await gw.plugins.enable('webhook', CLI);
  // As `echo "$S" | tyrum secret set HOOK_SECRET --local-only` would store it.
  gw.secrets.set('HOOK_SECRET', Buffer.from(`${SHARED}\n`), [], { localOnly: true });
  gw.channels.add({ plugin: 'webhook', name: 'crm', apiBase: 'http://127.0.0.1:9/hook', verifySecret: 'HOOK_SECRET', allow: ['u1'] });
  const send = (body: string) => fetch(`http://127.0.0.1:${gw.port}/channels/webhook/crm/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', ...signHmac(SHARED, body, Date.now()) }, body });
  const garbage = await send('this is not json');
  t.equal(garbage.status, 200, 'acknowledged: the platform would only send it again');
  t.match(await garbage.json(), { ok: false, ignored: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR' });
  const deep = await send('['.repeat(100) + ']'.repeat(100));
  t.equal(deep.status, 200);
  const entries = listAudit(gw.store, { type: 'channel.inbound_failed', limit: 10 });
  t.equal(entries.length, 2, 'both audited');
  const ok = await send(JSON.stringify({ id: 'm1', sender: { id: 'u1' }, chat: { id: 'c1' }, text: 'hi' }));
  t.equal(ok.status, 200, 'the trailing newline of the stored secret is not part of it');
  t.same(await ok.json(), { ok: true });
});
