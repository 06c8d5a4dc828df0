/**
 * `npm run bench -- channels`: chat channels and agent turns, in process. A gateway on port 0 with
 * the built telegram plugin, a local Telegram-shaped API server (answers `POST /bot<token>/sendMessage`
 * with `{ok:true,result:{message_id:n}}` at once) and a local Chat Completions server (answers every
 * `POST /v1/chat/completions` at once with a two-event SSE stream: "ok", then `[DONE]`); a channel
 * instance `telegram/bot` whose allowlist holds one sender.
 *
 * Sequential part: N inbound messages one after the other, each from the allowed sender in a chat
 * of its own (a new Telegram group per message, so a new conversation and no turn ever queues
 * behind another), each with a new update_id; the next is sent once the previous reply is
 * delivered. Every time is taken in this process with performance.now(): the webhook POST sent
 * (fetch to `/channels/telegram/bot/webhook` with `x-telegram-bot-api-secret-token`), its HTTP 200
 * read, and the gateway's own durable events as its in-process listeners see them
 * (`gw.engine.events.onEvent`, called after the commit that wrote the event): `turn.started`,
 * `turn.completed` (committed in the same commit as the delivery row: the reply handed to the
 * outbox) and `delivery.receipt` (state delivered). The model's own time is measured at the mock
 * model server, from the request received to the response ended, matched to its message by a tag
 * in the message text, and subtracted from turn.started → turn.completed.
 *
 * Baseline, same run: a bare node:http server on 127.0.0.1 that reads the body and answers
 * `{"ok":true}`, POSTed the same update with the same fetch, sequential, and with 16 concurrent
 * clients for the throughput row. Then throughput: 16 concurrent senders (closed loop, each
 * message in a new chat), messages/s from the webhook POST to `delivery.receipt`.
 *
 *   BENCH_CHANNEL_MESSAGES=200        sequential messages measured (after BENCH_CHANNEL_WARMUP=20)
 *   BENCH_CHANNEL_CONCURRENCY=16      concurrent senders in the throughput part
 *   BENCH_CHANNEL_TPUT_S=5            measured seconds of the throughput part (plus a short warm-up)
 *   BENCH_CHANNEL_BASELINE=1000       sequential bare POSTs, capped at 3 s
 * Figures, not assertions: only a message that is never delivered (or a failed turn) fails the run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { startGateway, type RunningGateway } from '../core/runtime.js';
import { setBackend } from '../core/conversations/settings.js';
import type { OutboxEvent } from '../core/execution/events.js';
import { closedLoop, diskLine, envNumber, fmtMs, fmtRate, loadAverage, sequential, stats, table, times, type Stats, reportTarget } from './util.js';

const MESSAGES = envNumber('BENCH_CHANNEL_MESSAGES', 200, 1);
const WARMUP = envNumber('BENCH_CHANNEL_WARMUP', 20);
const CONCURRENCY = envNumber('BENCH_CHANNEL_CONCURRENCY', 16, 1);
const TPUT_S = envNumber('BENCH_CHANNEL_TPUT_S', 5, 0.5);
const BASELINE_CALLS = envNumber('BENCH_CHANNEL_BASELINE', 1000, 1);
const TELEGRAM_DIR = resolve(fileURLToPath(new URL('../plugins/telegram/build/', import.meta.url)));
const ACTOR = { kind: 'cli', user: 'bench' };
const BOT_TOKEN = '123456:ABC-bench-bot-token';
const SENDER = 42;
/** How long one message may take from the webhook to its delivery before the run fails. */
const MESSAGE_TIMEOUT_MS = 20_000;

interface Local {
  url: string;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The Telegram-shaped API: sendMessage answers ok with a new message id, at once. */
async function mockTelegram(): Promise<Local & { sent: () => number }> {
  let n = 0;
  const { server, url } = await listen((req, res) => {
    void readBody(req).then(() => {
      if (req.method === 'POST' && req.url === `/bot${BOT_TOKEN}/sendMessage`) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, result: { message_id: ++n } }));
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: false, error_code: 404, description: 'Not Found' }));
      }
    });
  });
  return { url, sent: () => n, close: () => closeServer(server) };
}

const SSE_BODY = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'ok' }, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;

/**
 * The Chat Completions server: every request answered at once with the two-event stream. The time
 * from the request received to the response ended is recorded under the message's tag (`#bench:<tag>`
 * in the last user message), summed when one message causes more than one model call.
 */
async function mockModel(): Promise<Local & { ms: Map<string, number>; requests: () => number }> {
  const ms = new Map<string, number>();
  let requests = 0;
  const { server, url } = await listen((req, res) => {
    const t0 = performance.now();
    void readBody(req).then((text) => {
      requests++;
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"no route"}}');
        return;
      }
      const tags = [...text.matchAll(/#bench:([0-9a-z-]+)/g)];
      const tag = tags[tags.length - 1]?.[1] ?? '?';
      res.once('finish', () => ms.set(tag, (ms.get(tag) ?? 0) + performance.now() - t0));
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.end(SSE_BODY);
    });
  });
  return { url: `${url}/v1`, ms, requests: () => requests, close: () => closeServer(server) };
}

/** A bare node:http server: reads the body, answers {"ok":true}. */
async function bareServer(): Promise<Local> {
  const { server, url } = await listen((req, res) => {
    void readBody(req).then(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return { url, close: () => closeServer(server) };
}

/** A Telegram update: a text message from the allowed sender in group `chatId`. */
function update(updateId: number, chatId: number, tag: string): Record<string, unknown> {
  return {
    update_id: updateId,
    message: {
      message_id: updateId % 100000,
      from: { id: SENDER, is_bot: false, first_name: 'Ada', language_code: 'en' },
      chat: { id: chatId, title: 'Tyrum bench group', type: 'supergroup' },
      date: Math.floor(Date.now() / 1000),
      text: `hello, bench message #bench:${tag}`,
    },
  };
}

/** What one message went through, in performance.now() ms. */
interface Trace {
  tag: string;
  chat: string;
  sent: number;
  answered?: number;
  status?: number;
  conversation?: string;
  started?: number;
  completed?: number;
  delivered?: number;
  failed?: string;
  done: () => void;
  fail: (e: Error) => void;
}

/** Follows each message by its chat (the conversation's account) through the gateway's events. */
class Tracker {
  private readonly byChat = new Map<string, Trace>();
  private readonly byConv = new Map<string, Trace>();
  readonly anomalies: string[] = [];
  private readonly off: () => void;

  constructor(private readonly gw: RunningGateway) {
    this.off = gw.engine.events.onEvent((e) => this.on(e));
  }

  close(): void {
    this.off();
  }

  /** Registers the message before its POST; resolves when its reply is delivered. */
  expect(tag: string, chat: string): { trace: Trace; delivered: Promise<void> } {
    let done!: () => void;
    let fail!: (e: Error) => void;
    const delivered = new Promise<void>((r, j) => {
      done = r;
      fail = j;
    });
    const trace: Trace = { tag, chat, sent: 0, done, fail };
    this.byChat.set(chat, trace);
    return { trace, delivered };
  }

  private on(e: OutboxEvent): void {
    const now = performance.now();
    const cid = e.payload.conversation_id;
    if (typeof cid !== 'string') return;
    let t = this.byConv.get(cid);
    if (!t && e.type === 'message.created') {
      const conv = this.gw.store.conversations.conversation(cid);
      t = conv ? this.byChat.get(conv.account) : undefined;
      if (t) {
        t.conversation = cid;
        this.byConv.set(cid, t);
        this.byChat.delete(t.chat);
      }
    }
    if (!t) return;
    switch (e.type) {
      case 'turn.started':
        if (t.started === undefined) t.started = now;
        else this.anomalies.push(`${t.tag}: a second turn.started`);
        break;
      case 'turn.completed':
        t.completed = now;
        break;
      case 'turn.failed':
        t.failed = `turn.failed ${String(e.payload.error_code)}`;
        this.end(t, cid);
        break;
      case 'delivery.receipt':
        if (e.payload.state === 'delivered') t.delivered = now;
        else t.failed = `delivery ${String(e.payload.state)} ${String(e.payload.error_code)}`;
        this.end(t, cid);
        break;
      default:
        break;
    }
  }

  private end(t: Trace, cid: string): void {
    this.byConv.delete(cid);
    if (t.failed) t.fail(new Error(`channels bench: message ${t.tag}: ${t.failed}`));
    else t.done();
  }
}

export async function channelsBench(): Promise<void> {
  const t0 = performance.now();
  console.log('\n## Chat channels and agent turns: Telegram webhook → turn → reply delivered (in process)');
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-channels-'));
  const telegram = await mockTelegram();
  const model = await mockModel();
  const bare = await bareServer();
  let gw: RunningGateway | null = null;
  let tracker: Tracker | null = null;
  try {
    console.log(`\n${diskLine(home)}\n`);
    gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
    const g = gw;
    await g.plugins.install(TELEGRAM_DIR, ACTOR);
    await g.plugins.grant('telegram', { allRequested: true, acceptRisks: [] }, ACTOR);
    await g.plugins.enable('telegram', ACTOR);
    const secret = 'whsec-' + randomBytes(12).toString('hex');
    g.secrets.set('TG_WEBHOOK', Buffer.from(secret), [], { localOnly: true });
    g.secrets.set('TG_BOT', Buffer.from(BOT_TOKEN), [telegram.url]);
    setBackend(g.store, g.secrets, { baseUrl: model.url, model: 'bench' });
    g.channels.add({ plugin: 'telegram', name: 'bot', apiBase: telegram.url, verifySecret: 'TG_WEBHOOK', credentialSecret: 'TG_BOT', allow: [String(SENDER)] });
    const webhook = `http://127.0.0.1:${g.port}/channels/telegram/bot/webhook`;
    const headers = { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret };
    const tr = (tracker = new Tracker(g));

    let next = 0;
    /** One message in a new chat: POST, then wait for its delivery. */
    const message = async (): Promise<Trace> => {
      const i = ++next;
      const tag = `m${i}`;
      const chatId = -1_000_000_000 - i;
      const body = JSON.stringify(update(500_000 + i, chatId, tag));
      const { trace, delivered } = tr.expect(tag, String(chatId));
      delivered.catch(() => undefined); // awaited below; a failure before that is thrown by the POST
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, j) => {
        timer = setTimeout(() => j(new Error(`channels bench: message ${tag} not delivered within ${MESSAGE_TIMEOUT_MS} ms (${JSON.stringify({ ...trace, done: undefined, fail: undefined })})`)), MESSAGE_TIMEOUT_MS);
      });
      try {
        trace.sent = performance.now();
        const res = await fetch(webhook, { method: 'POST', headers, body });
        await res.text();
        trace.answered = performance.now();
        trace.status = res.status;
        if (res.status !== 200) throw new Error(`channels bench: webhook answered ${res.status}`);
        await Promise.race([delivered, timeout]);
      } finally {
        clearTimeout(timer);
      }
      return trace;
    };

    // Baseline: the same POST to a bare node:http server, same client.
    const bareBody = JSON.stringify(update(1, -1, 'bare'));
    const barePost = async () => {
      const res = await fetch(bare.url, { method: 'POST', headers, body: bareBody });
      await res.text();
    };
    const bareSeq = await sequential(BASELINE_CALLS, barePost, 3000);

    // Sequential messages, each in its own chat.
    for (let i = 0; i < WARMUP; i++) await message();
    const traces: Trace[] = [];
    for (let i = 0; i < MESSAGES; i++) traces.push(await message());
    const modelMs = (t: Trace) => model.ms.get(t.tag) ?? NaN;
    const col = (f: (t: Trace) => number) => stats(traces.map(f).filter((v) => Number.isFinite(v)));
    const answered = col((t) => t.answered! - t.sent);
    const toStarted = col((t) => t.started! - t.sent);
    const turnGross = col((t) => t.completed! - t.started!);
    const turnNet = col((t) => t.completed! - t.started! - modelMs(t));
    const modelOnly = col(modelMs);
    const toDelivered = col((t) => t.delivered! - t.completed!);
    const endToEnd = col((t) => t.delivered! - t.sent);
    const unmatched = traces.filter((t) => !Number.isFinite(modelMs(t))).length;
    const startedBeforeAnswer = traces.filter((t) => t.started! < t.answered!).length;

    // Throughput: concurrent senders, each message in a new chat.
    const bareTput = await closedLoop(Array.from({ length: CONCURRENCY }, () => barePost), Math.min(2, TPUT_S));
    const tput = await closedLoop(Array.from({ length: CONCURRENCY }, () => message), TPUT_S);

    const b = bareSeq.p50;
    reportTarget('channels.inbound', { figure: `${fmtMs(toStarted.p50)} (${fmtMs(toStarted.p99)})`, baseline: `bare node:http POST p50 ${fmtMs(b)}`, ratio: times(toStarted.p50, b), met: null });
    reportTarget('channels.reply', { figure: `${fmtMs(turnNet.p50)} (${fmtMs(turnNet.p99)})`, baseline: `bare node:http POST p50 ${fmtMs(b)}`, ratio: times(turnNet.p50, b), met: null });
    const row = (name: string, s: Stats, note = ''): string[] => [name, fmtMs(s.p50), fmtMs(s.p99), String(s.n), times(s.p50, b), note];
    console.log(`Sequential: ${traces.length} messages (after ${WARMUP} warm-up), one at a time, each from the allowed sender in a new Telegram group (a new conversation per message), the next sent once the previous reply was delivered. Baseline: the same update POSTed with the same fetch to a bare node:http server on 127.0.0.1, sequential p50 **${fmtMs(bareSeq.p50)}** (p99 ${fmtMs(bareSeq.p99)}, ${bareSeq.n} posts).\n`);
    table(
      ['measure', 'p50', 'p99', 'n', 'p50 / bare POST p50', 'what'],
      [
        row('inbound webhook → HTTP 200 answered', answered, 'verify, plugin inbound (WASM), one commit: dedupe + sender + message + turn queued'),
        row('inbound webhook → turn started', toStarted, `turn.started seen after its commit; ${startedBeforeAnswer} of ${traces.length} before the 200 was read`),
        row('turn started → reply handed to the outbox, model time excluded', turnNet, 'turn.started → turn.completed (same commit as the delivery row) minus the model server time'),
        row('  the same, model time included', turnGross, ''),
        row('  model time at the mock model server', modelOnly, `request received → response ended${unmatched ? `; ${unmatched} unmatched` : ''}`),
        row('reply handed to outbox → delivered (platform time included)', toDelivered, 'turn.completed → delivery.receipt: plugin outbound (WASM), sendMessage, two commits'),
        row('inbound webhook → delivered, end to end', endToEnd, ''),
        ['bare node:http POST round trip (baseline)', fmtMs(bareSeq.p50), fmtMs(bareSeq.p99), String(bareSeq.n), '1.00×', 'same client, same body'],
      ],
    );
    console.log(
      `\nThroughput: ${CONCURRENCY} concurrent senders, closed loop for ${TPUT_S} s (after a short warm-up), each message in a new chat, counted at its delivery.receipt: **${fmtRate(tput.rate)}** messages delivered (${tput.calls} measured), webhook → delivered p50 ${fmtMs(tput.lat.p50)}, p99 ${fmtMs(tput.lat.p99)}. Baseline: bare node:http POSTs with ${CONCURRENCY} concurrent clients, ${fmtRate(bareTput.rate)} (ratio ${times(tput.rate, bareTput.rate)}); the sequential rate above is ${fmtRate(1000 / endToEnd.p50)} at its p50.`,
    );
    console.log(`The gateway runs at most 4 turns at once (TurnRunner maxConcurrent default), so turns beyond 4 wait in the queue.`);
    if (tr.anomalies.length) console.log(`\nAnomalies: ${tr.anomalies.slice(0, 5).join('; ')}${tr.anomalies.length > 5 ? ` (+${tr.anomalies.length - 5})` : ''}`);
    console.log(`\nWhole section: ${next} messages posted (warm-ups included), ${model.requests()} model calls, ${telegram.sent()} sendMessage calls answered by the mock platform.`);
  } finally {
    tracker?.close();
    if (gw) await gw.close();
    await Promise.all([telegram.close(), model.close(), bare.close()]);
    rmSync(home, { recursive: true, force: true });
  }
  console.log(`\nchannels section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadAverage()}`);
}
