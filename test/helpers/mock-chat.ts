/**
 * Test helpers for chat channels: local servers (node:http on 127.0.0.1, port 0) that answer like
 * the Telegram Bot API, Slack's Web API and a generic webhook receiver, and builders of realistic
 * inbound payloads (Telegram Updates, Slack Events API envelopes).
 *
 * Each server records every request (method, path, headers, raw and parsed body), exposes `url`,
 * the API base to configure a channel instance with, can fail its next N requests with a given
 * status (503, or 429 with Retry-After) to test retries, and closes with `close()`.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook, type VerifyResult } from '../../core/channels/verify.js';

export interface RecordedRequest {
  method: string;
  /** Path and query, as requested. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The raw body, as text. */
  raw: string;
  /** The body parsed as JSON; undefined when it is not JSON. */
  body: unknown;
  /** What the server answered. */
  status: number;
  /** True when the answer was a failure queued with failNext. */
  injected?: boolean;
  /** Receiver only, with a secret: the hmac_sha256 check of the request. */
  verified?: VerifyResult;
}

export interface FailOptions {
  /** Seconds, sent as Retry-After (and in Telegram's parameters.retry_after). */
  retryAfter?: number;
  /** A body to answer instead of the platform's usual error body. */
  body?: unknown;
}

export interface MockChatServer {
  /** The API base a channel instance is configured with. */
  readonly url: string;
  /** Every request received, in order (failed ones included). */
  readonly requests: RecordedRequest[];
  /** Answer the next `n` requests with `status` (e.g. 503, or 429 with `retryAfter`) instead of serving them. */
  failNext(n: number, status: number, opts?: FailOptions): void;
  /** The requests that were served (not failed on purpose). */
  served(): RecordedRequest[];
  close(): Promise<void>;
}

interface Failure {
  status: number;
  opts: FailOptions;
}

type Handler = (req: RecordedRequest) => { status: number; body: unknown; headers?: Record<string, string> };

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parse(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A server on 127.0.0.1 whose requests go to `handle`, unless a failure is queued. */
async function mockServer(basePath: string, handle: Handler, failureBody: (f: Failure) => unknown, onRaw?: (req: IncomingMessage, raw: string, rec: RecordedRequest) => void): Promise<MockChatServer> {
  const requests: RecordedRequest[] = [];
  const failures: Failure[] = [];
  const server = createServer((req, res) => {
    readBody(req).then(
      (raw) => {
        const rec: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, raw, body: parse(raw), status: 0 };
        onRaw?.(req, raw, rec);
        requests.push(rec);
        const failure = failures.shift();
        if (failure !== undefined) {
          rec.status = failure.status;
          rec.injected = true;
          const headers: Record<string, string> = failure.opts.retryAfter === undefined ? {} : { 'retry-after': String(failure.opts.retryAfter) };
          send(res, failure.status, failure.opts.body ?? failureBody(failure), headers);
          return;
        }
        const out = handle(rec);
        rec.status = out.status;
        send(res, out.status, out.body, out.headers);
      },
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${basePath}`,
    requests,
    failNext(n: number, status: number, opts: FailOptions = {}): void {
      for (let i = 0; i < n; i++) failures.push({ status, opts });
    },
    served: () => requests.filter((r) => r.injected !== true),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// --- Telegram ----------------------------------------------------------------------------------

export interface MockTelegram extends MockChatServer {
  /** The messages sendMessage accepted, as Telegram stored them. */
  readonly sent: Array<{ message_id: number; chat_id: string; text: string; message_thread_id?: number }>;
}

/**
 * The Telegram Bot API's sendMessage: `POST /bot<token>/sendMessage` with a JSON body answers
 * `{ok: true, result: {message_id, chat: {id}, text, ...}}`; another token gets 401
 * `{ok: false, error_code: 401, description: "Unauthorized"}`. A missing chat_id or text, or a text
 * over 4096 UTF-16 units, gets Telegram's 400. `url` is the API base (`http://127.0.0.1:PORT`).
 */
export async function startMockTelegram(opts: { token: string }): Promise<MockTelegram> {
  const sent: MockTelegram['sent'] = [];
  let nextId = 100;
  const error = (code: number, description: string): { status: number; body: unknown } => ({ status: code, body: { ok: false, error_code: code, description } });
  const server = await mockServer(
    '',
    (req) => {
      const m = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(req.path);
      if (req.method !== 'POST' || m === null) return error(404, 'Not Found');
      if (decodeURIComponent(m[1] ?? '') !== opts.token) return error(401, 'Unauthorized');
      if (m[2] !== 'sendMessage') return error(404, 'Not Found: method not found');
      const body = req.body;
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json') || !isObject(body)) return error(400, 'Bad Request: message text is empty');
      const chatId = body.chat_id;
      if (typeof chatId !== 'string' && typeof chatId !== 'number') return error(400, 'Bad Request: chat_id is empty');
      const text = body.text;
      if (typeof text !== 'string' || text.trim() === '') return error(400, 'Bad Request: message text is empty');
      if (text.length > 4096) return error(400, 'Bad Request: message is too long');
      const thread = body.message_thread_id;
      const message_id = nextId++;
      const record: MockTelegram['sent'][number] = { message_id, chat_id: String(chatId), text };
      if (thread !== undefined) record.message_thread_id = Number(thread);
      sent.push(record);
      const numericChat = /^-?[0-9]+$/.test(String(chatId)) ? Number(chatId) : chatId;
      return {
        status: 200,
        body: {
          ok: true,
          result: {
            message_id,
            ...(thread === undefined ? {} : { message_thread_id: Number(thread), is_topic_message: true }),
            from: { id: 7000000001, is_bot: true, first_name: 'Tyrum', username: 'tyrum_test_bot' },
            chat: { id: numericChat, type: typeof numericChat === 'number' && numericChat < 0 ? 'supergroup' : 'private' },
            date: Math.floor(Date.now() / 1000),
            text,
          },
        },
      };
    },
    (f) => ({
      ok: false,
      error_code: f.status,
      description: f.status === 429 ? `Too Many Requests: retry after ${f.opts.retryAfter ?? 1}` : f.status >= 500 ? 'Internal Server Error' : 'Bad Request',
      ...(f.status === 429 ? { parameters: { retry_after: f.opts.retryAfter ?? 1 } } : {}),
    }),
  );
  return Object.assign(server, { sent });
}

// --- Slack -------------------------------------------------------------------------------------

export interface MockSlack extends MockChatServer {
  /** The messages chat.postMessage accepted. */
  readonly sent: Array<{ ts: string; channel: string; text: string; thread_ts?: string }>;
}

/**
 * Slack's chat.postMessage: `POST /api/chat.postMessage` with `Authorization: Bearer <token>`
 * answers `{ok: true, channel, ts: "<n>.000100", message}`; a missing or wrong token
 * `{ok: false, error: "invalid_auth"}` (HTTP 200, as Slack does); no channel `channel_not_found`,
 * no text `no_text`. `url` is the API base (`http://127.0.0.1:PORT/api`).
 */
export async function startMockSlack(opts: { token: string }): Promise<MockSlack> {
  const sent: MockSlack['sent'] = [];
  let n = 1700000000;
  const server = await mockServer(
    '/api',
    (req) => {
      if (req.method !== 'POST' || req.path !== '/api/chat.postMessage') return { status: 404, body: { ok: false, error: 'unknown_method' } };
      if (req.headers.authorization !== `Bearer ${opts.token}`) return { status: 200, body: { ok: false, error: 'invalid_auth' } };
      const body = req.body;
      if (!isObject(body)) return { status: 200, body: { ok: false, error: 'invalid_json' } };
      if (typeof body.channel !== 'string' || body.channel === '') return { status: 200, body: { ok: false, error: 'channel_not_found' } };
      if (typeof body.text !== 'string' || body.text === '') return { status: 200, body: { ok: false, error: 'no_text' } };
      const ts = `${n++}.000100`;
      const record: MockSlack['sent'][number] = { ts, channel: body.channel, text: body.text };
      if (typeof body.thread_ts === 'string') record.thread_ts = body.thread_ts;
      sent.push(record);
      return {
        status: 200,
        body: {
          ok: true,
          channel: body.channel,
          ts,
          message: { type: 'message', subtype: 'bot_message', bot_id: 'B0TYRUM01', text: body.text, ts, ...(record.thread_ts === undefined ? {} : { thread_ts: record.thread_ts }) },
        },
      };
    },
    (f) => ({ ok: false, error: f.status === 429 ? 'ratelimited' : 'fatal_error' }),
  );
  return Object.assign(server, { sent });
}

// --- generic webhook receiver -------------------------------------------------------------------

/**
 * A receiver for the generic signed webhook's replies: any POST answers 200 `{ok: true}`. With a
 * `secret`, each recorded request carries `verified`, the hmac_sha256 check (X-Tyrum-Timestamp,
 * X-Tyrum-Signature) of its raw body, and an unverified request gets 401. `url` is the URL itself
 * (`http://127.0.0.1:PORT/hook`).
 */
export async function startMockReceiver(opts: { secret?: string; path?: string } = {}): Promise<MockChatServer> {
  const path = opts.path ?? '/hook';
  return mockServer(
    path,
    (req) => {
      if (req.method !== 'POST' || req.path !== path) return { status: 404, body: { ok: false, error: 'not found' } };
      if (req.verified !== undefined && !req.verified.ok) return { status: 401, body: { ok: false, error: req.verified.reason } };
      return { status: 200, body: { ok: true } };
    },
    (f) => ({ ok: false, error: `failing on purpose (${f.status})` }),
    (_req, raw, rec) => {
      if (opts.secret !== undefined) rec.verified = verifyWebhook('hmac_sha256', rec.headers, Buffer.from(raw), Buffer.from(opts.secret), Date.now());
    },
  );
}

// --- inbound payloads ---------------------------------------------------------------------------

export interface TelegramUpdateOptions {
  update_id: number;
  chat_id: number;
  from_id: number;
  text: string;
  /** "private" (default when chat_id equals from_id), "group" or "supergroup" (the default otherwise). */
  chat_type?: 'private' | 'group' | 'supergroup';
  /** A forum topic: sets message_thread_id, is_topic_message and the chat's is_forum. */
  thread_id?: number;
  first_name?: string;
  last_name?: string;
  username?: string;
  is_bot?: boolean;
  message_id?: number;
  /** Unix seconds (default: now). */
  date?: number;
}

/** A Telegram Bot API Update carrying a text message, shaped as Telegram sends it to a webhook. */
export function telegramUpdate(o: TelegramUpdateOptions): Record<string, unknown> {
  const type = o.chat_type ?? (o.chat_id === o.from_id ? 'private' : 'supergroup');
  const first = o.first_name ?? 'Ada';
  const from: Record<string, unknown> = { id: o.from_id, is_bot: o.is_bot ?? false, first_name: first };
  if (o.last_name !== undefined) from.last_name = o.last_name;
  if (o.username !== undefined) from.username = o.username;
  from.language_code = 'en';
  const chat: Record<string, unknown> =
    type === 'private'
      ? { id: o.chat_id, first_name: first, ...(o.last_name === undefined ? {} : { last_name: o.last_name }), ...(o.username === undefined ? {} : { username: o.username }), type }
      : { id: o.chat_id, title: 'Tyrum test group', type, ...(o.thread_id === undefined ? {} : { is_forum: true }) };
  const message: Record<string, unknown> = {
    message_id: o.message_id ?? o.update_id % 100000,
    ...(o.thread_id === undefined ? {} : { message_thread_id: o.thread_id }),
    from,
    chat,
    date: o.date ?? Math.floor(Date.now() / 1000),
    ...(o.thread_id === undefined ? {} : { is_topic_message: true }),
    text: o.text,
  };
  if (o.text.startsWith('/')) {
    const end = o.text.search(/\s|$/);
    message.entities = [{ offset: 0, length: end, type: 'bot_command' }];
  }
  return { update_id: o.update_id, message };
}

export interface SlackEventOptions {
  event_id: string;
  channel: string;
  user: string;
  text: string;
  /** "channel" (default), "group", "mpim" or "im" (the default for a channel id starting with "D"). */
  channel_type?: 'channel' | 'group' | 'mpim' | 'im';
  thread_ts?: string;
  /** The message's ts (default: now, as Slack writes it). */
  ts?: string;
  team_id?: string;
}

/** A Slack Events API `event_callback` envelope carrying a `message` event from a person. */
export function slackEvent(o: SlackEventOptions): Record<string, unknown> {
  const team = o.team_id ?? 'T0TYRUM01';
  const ts = o.ts ?? `${Math.floor(Date.now() / 1000)}.${String(Date.now() % 1000).padStart(3, '0')}100`;
  const event: Record<string, unknown> = {
    user: o.user,
    type: 'message',
    ts,
    client_msg_id: '5f0c3f0e-8f5b-4a4e-9c61-1d7a5c0f2b11',
    text: o.text,
    team,
    blocks: [{ type: 'rich_text', block_id: 'Xy1', elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: o.text }] }] }],
    ...(o.thread_ts === undefined ? {} : { thread_ts: o.thread_ts, parent_user_id: 'U0PARENT01' }),
    channel: o.channel,
    event_ts: ts,
    channel_type: o.channel_type ?? (o.channel.startsWith('D') ? 'im' : 'channel'),
  };
  return {
    token: 'XXYYZZ-verification-token-unused',
    team_id: team,
    context_team_id: team,
    context_enterprise_id: null,
    api_app_id: 'A0TYRUM01',
    event,
    type: 'event_callback',
    event_id: o.event_id,
    event_time: Math.floor(Number(ts)),
    authorizations: [{ enterprise_id: null, team_id: team, user_id: 'U0TYRUMBOT', is_bot: true, is_enterprise_install: false }],
    is_ext_shared_channel: false,
    event_context: `4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMFRZUlVNMDEifQ`,
  };
}

/** Slack's `url_verification` request (sent when an Events API request URL is saved). */
export function slackUrlVerification(challenge: string): Record<string, unknown> {
  return { token: 'XXYYZZ-verification-token-unused', challenge, type: 'url_verification' };
}
