// Channel deliveries on several gateways sharing one PostgreSQL (migration 20): two delivery
// workers, each in a process of its own with its own owner, race for the same deliveries; the mock
// platform counts what it receives. Every reply goes out exactly once; a delivery claimed by a
// worker that died is sent once, by one worker, only after its claim expired. Always on
// PostgreSQL; skipped with the harness's reason without it.
import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';
import { until, workerDb } from '../../helpers/worker-processes.js';

const FIXTURE = new URL('./fixtures/delivery-worker.ts', import.meta.url).pathname;
const N = 40;

const cluster = sharedPostgres(t);

t.test('two workers racing on one database send every delivery exactly once; a dead worker’s claim is taken over once after it expired', { skip: skipWithoutPostgres() }, async (t) => {
  const received: Array<{ text: string; at: number }> = [];
  const srv = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { text: string };
      received.push({ text: body.text, at: Date.now() });
      // A little latency, as a real platform has: the other worker has time to race.
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, id: received.length })), 20);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  t.teardown(() => srv.close());
  const { url, store, read, spawnWorker } = await workerDb(t, cluster);

  const now = Date.now();
  await store.commit(() => {
    store.conversations.insertInstance({ id: 'chan_1', plugin_id: 'mock', channel: 'mock', name: 'main', api_base: base, credential_secret: null, verify_secret: 'v', dm_policy: 'open', created_at: now, updated_at: now });
    store.conversations.insertConversation({ id: 'conv_1', channel: 'mock/main', account: '42', thread: '', title: null, created_by: 'channel:mock/main', created_at: now, updated_at: now });
  });
  const workers = ['replica-a', 'replica-b'].map((owner) => spawnWorker(FIXTURE, [url, owner, base]));
  await until('both workers to start', () => workers.every((w) => w.seen.some((o) => o.ready)), 60_000);
  // One delivery claimed by a worker that died mid-send (its claim runs out later, below).
  const STALE_MS = 10 * 60_000;
  await store.commit(() => {
    const c = store.conversations;
    for (let i = 0; i <= N; i++) {
      c.insertMessage({ id: `msg_${i}`, conversation_id: 'conv_1', role: 'assistant', content: `reply ${i}`, tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: '{}', usage: null, created_at: now });
      c.insertDelivery({ id: `dlv_${i}`, instance_id: 'chan_1', conversation_id: 'conv_1', message_id: `msg_${i}`, chat_id: '42', thread_id: null, text: `reply ${i}`, state: 'pending', parts_sent: 0, receipts: '[]', attempts: 0, next_attempt_at: i === 0 ? now : now + 1, last_error: null, created_at: now, updated_at: now, finished_at: null });
    }
  });
  const stale = await store.commit(() => store.conversations.claimDeliveries('replica-dead', now, STALE_MS, 1));
  t.same(stale.map((d) => d.id), ['dlv_0'], 'dlv_0 is claimed by a worker that then died');

  // Both workers are idle; the replies are queued, then both are told at once (as every replica
  // is when another one commits): they race for the same rows.
  for (const w of workers) w.send('kick');
  const delivered = () => read.conversations.deliveries('conv_1', 1000).filter((d) => d.state === 'delivered').length;
  await until('the fresh deliveries to be delivered', () => delivered() >= N, 60_000);
  t.equal(received.length, N, `the platform received ${N} requests for ${N} fresh deliveries`);
  t.notOk(received.some((r) => r.text === 'reply 0'), 'the stale claim is not taken over while it is alive');
  // Time passes: the dead worker's claim runs out now.
  const staleUntil = Date.now();
  t.equal(await store.commit(() => store.conversations.expireDeliveryClaims('replica-dead', staleUntil)), 1);
  for (const w of workers) w.send('kick');

  await until('the stale delivery to be delivered', () => delivered() === N + 1, 60_000);
  const texts = received.map((r) => r.text).sort();
  t.equal(received.length, N + 1, 'one request per delivery');
  t.same(texts, [...new Set(texts)], 'no reply sent twice');
  const late = received.find((r) => r.text === 'reply 0')!;
  t.ok(late.at >= staleUntil, 'the stale delivery was sent only after its claim expired');
  const rows = read.conversations.deliveries('conv_1', 1000);
  t.ok(rows.every((d) => d.state === 'delivered' && d.parts_sent === 1 && d.claim_owner === null), 'every delivery delivered, one part, its claim released');
  t.equal(read.conversations.delivery('dlv_0')?.claim_token, 2, 'the stale delivery was claimed once more, by one worker');

  for (const w of workers) w.send('stop');
  await until('both workers to exit', () => workers.every((w) => w.child.exitCode !== null), 60_000);
  t.same(
    workers.map((w) => w.child.exitCode),
    [0, 0],
    `both workers stopped cleanly ${workers.map((w) => w.err()).join('')}`,
  );
});
