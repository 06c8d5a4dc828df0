/**
 * A scripted OpenAI Chat Completions server for tests: a real HTTP server (node:http, 127.0.0.1,
 * port 0) answering `POST /v1/chat/completions` the way OpenAI does, streamed or not.
 *
 *   const ai = await startMockOpenAi({ script: [{ content: 'Hello' }, { tool_calls: [{ name: 'f', arguments: '{}' }] }] });
 *   t.teardown(() => ai.close());
 *   new OpenAiCompatibleBackend({ baseUrl: ai.url, model: 'm' });   // ai.url = http://127.0.0.1:PORT/v1
 *
 * Each request consumes the next entry of the script: a {@link MockReply}, or a function computing
 * one from the {@link MockRequest} (e.g. to answer from the tool results in `messages`). A function
 * given as the whole script answers every request. `push()` appends replies while a test runs.
 * When the script is used up the server answers 500 naming the request, so an under-scripted test
 * fails loudly (after the client's retries) instead of hanging.
 *
 * Every request is recorded in `requests` (method, path, lower-cased headers, parsed JSON body).
 * A reply streams when the request asked for it (`stream: true`) unless it sets `stream`. A stream
 * is `text/event-stream`: a role chunk, the content in pieces of `chunkSize` characters, each tool
 * call as OpenAI sends it (id, type and name first with empty arguments, then argument fragments,
 * all keyed by `index`), a chunk with `finish_reason`, the usage chunk (empty `choices`) when the
 * request set `stream_options.include_usage`, and `data: [DONE]`.
 *
 * `GET /v1/models` lists the one model, for code that probes a server before using it.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MockToolCall {
  /** Generated (`call_mock_<n>`) when absent, as OpenAI always sends one. */
  id?: string;
  name: string;
  /** Raw JSON text, sent as is (malformed on purpose if a test wants). */
  arguments: string;
}

export interface MockUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface MockReply {
  content?: string;
  tool_calls?: MockToolCall[];
  /** Default: 'tool_calls' when there are tool calls, else 'stop'. */
  finish_reason?: string;
  /** Default: the request's model, else 'mock-model'. */
  model?: string;
  /** Default: a rough count (characters / 4); null sends no usage at all. */
  usage?: MockUsage | null;
  /** Stream or not; default: as the request asked. Also picks the content-type of `raw`. */
  stream?: boolean;
  /** An HTTP status; 400 and above answers `{error:{message}}` instead of a completion. */
  status?: number;
  /** A `Retry-After` header value (seconds or an HTTP date). */
  retryAfter?: string;
  /** The error's message (with `status` >= 400). */
  errorMessage?: string;
  /** Wait this long before answering (headers included). */
  delayMs?: number;
  /** Pause between stream events (a slow model). */
  chunkDelayMs?: number;
  /** Never finish: without content or tool calls, never answer at all; with them, stream them and then stall. */
  hang?: boolean;
  /** Stream the content and tool calls, then cut the connection without finishing. */
  disconnect?: boolean;
  /** Split content and each tool call's arguments into pieces of this many characters. Default: one piece. */
  chunkSize?: number;
  /** Send this body verbatim (status `status` or 200); with `chunkSize`, written in pieces of that many characters. */
  raw?: string;
  /** Overrides the content-type of `raw`. */
  contentType?: string;
}

export interface MockRequest {
  method: string;
  /** e.g. '/v1/chat/completions'. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body; null when empty or not JSON. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary fields of the request body
  body: any;
}

export type MockScriptEntry = MockReply | ((req: MockRequest) => MockReply | Promise<MockReply>);

export interface MockOpenAi {
  /** Base URL to give a client, e.g. http://127.0.0.1:PORT/v1. */
  url: string;
  /** Every request received, in order. */
  requests: MockRequest[];
  /** Appends replies to the script. */
  push(...replies: MockScriptEntry[]): void;
  /** Replies not yet consumed. */
  remaining(): number;
  /** Stops the server, cutting any hanging or delayed response. */
  close(): Promise<void>;
}

export async function startMockOpenAi(opts: { script?: MockScriptEntry[] | ((req: MockRequest) => MockReply | Promise<MockReply>) } = {}): Promise<MockOpenAi> {
  const queue: MockScriptEntry[] = Array.isArray(opts.script) ? [...opts.script] : [];
  const every = typeof opts.script === 'function' ? opts.script : null;
  const requests: MockRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  /** Resolves after `ms`, or never once the server is closed (its sockets are destroyed then). */
  const wait = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const server = createServer((req, res) => {
    void handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) json(res, 500, { error: { message: `mock-openai: ${e instanceof Error ? e.message : String(e)}` } });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = null;
    try {
      body = text === '' ? null : JSON.parse(text);
    } catch {
      body = null;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const request: MockRequest = { method: req.method ?? 'GET', path, headers: req.headers, body };
    if (request.method === 'GET' && path === '/v1/models') {
      json(res, 200, { object: 'list', data: [{ id: 'mock-model', object: 'model', owned_by: 'mock' }] });
      return;
    }
    if (request.method !== 'POST' || path !== '/v1/chat/completions') {
      json(res, 404, { error: { message: `mock-openai: no route ${request.method} ${path}` } });
      return;
    }
    requests.push(request);
    const entry = queue.shift() ?? every;
    if (entry === null) {
      json(res, 500, { error: { message: `mock-openai: script exhausted, no reply left for request #${requests.length}` } });
      return;
    }
    const reply = typeof entry === 'function' ? await entry(request) : entry;
    await answer(request, reply, res);
  }

  async function answer(request: MockRequest, reply: MockReply, res: ServerResponse): Promise<void> {
    const hasOutput = reply.content !== undefined || (reply.tool_calls?.length ?? 0) > 0;
    if (reply.hang && !hasOutput && reply.raw === undefined) return; // never answers; close() cuts it
    if (reply.delayMs) await wait(reply.delayMs);
    if (closed) return;
    const retryAfter: Record<string, string> = reply.retryAfter !== undefined ? { 'retry-after': reply.retryAfter } : {};
    const streaming = reply.stream ?? request.body?.stream === true;
    const status = reply.status ?? 200;

    if (reply.raw !== undefined) {
      res.writeHead(status, { 'content-type': reply.contentType ?? (streaming ? 'text/event-stream' : 'application/json'), ...retryAfter });
      for (const piece of pieces(reply.raw, reply.chunkSize)) {
        res.write(piece);
        if (reply.chunkSize) await wait(reply.chunkDelayMs ?? 1);
      }
      res.end();
      return;
    }
    if (status >= 400) {
      json(res, status, { error: { message: reply.errorMessage ?? `mock-openai: scripted HTTP ${status}`, type: 'mock_error', code: null } }, retryAfter);
      return;
    }

    const model = reply.model ?? (typeof request.body?.model === 'string' ? request.body.model : 'mock-model');
    const calls = (reply.tool_calls ?? []).map((c, n) => ({ id: c.id ?? `call_mock_${n}`, name: c.name, arguments: c.arguments }));
    const finish = reply.finish_reason ?? (calls.length > 0 ? 'tool_calls' : 'stop');
    const usage = reply.usage === undefined ? roughUsage(request, reply) : reply.usage;
    const id = `chatcmpl-mock-${requests.length}`;
    const created = Math.floor(Date.now() / 1000);

    if (!streaming) {
      const message: Record<string, unknown> = { role: 'assistant', content: reply.content ?? null };
      if (calls.length > 0) message.tool_calls = calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
      json(res, status, { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, finish_reason: finish }], ...(usage ? { usage } : {}) }, retryAfter);
      return;
    }

    const withUsage = request.body?.stream_options?.include_usage === true && usage !== null;
    res.writeHead(status, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...retryAfter });
    const send = async (choices: unknown[], extra: Record<string, unknown> = {}): Promise<void> => {
      if (closed) return;
      // OpenAI sends `usage: null` on every chunk but the last when usage was asked for.
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...(withUsage ? { usage: null } : {}), ...extra })}\n\n`);
      if (reply.chunkDelayMs) await wait(reply.chunkDelayMs);
    };
    const delta = (d: Record<string, unknown>, finishReason: string | null = null): unknown[] => [{ index: 0, delta: d, logprobs: null, finish_reason: finishReason }];

    await send(delta({ role: 'assistant', content: '' }));
    for (const piece of pieces(reply.content ?? '', reply.chunkSize)) await send(delta({ content: piece }));
    for (const [index, c] of calls.entries()) {
      await send(delta({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } }] }));
      for (const piece of pieces(c.arguments, reply.chunkSize)) await send(delta({ tool_calls: [{ index, function: { arguments: piece } }] }));
    }
    if (reply.hang) return; // stalls mid-answer; close() cuts it
    if (reply.disconnect) {
      res.socket?.end(); // after what was written so far, mid chunked body
      return;
    }
    await send(delta({}, finish));
    if (withUsage) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
    res.end('data: [DONE]\n\n');
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    push: (...replies) => void queue.push(...replies),
    remaining: () => queue.length,
    close: async () => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** `text` in pieces of `size` characters (code points, so no emoji is split); one piece without a size; none for ''. */
function pieces(text: string, size: number | undefined): string[] {
  if (text === '') return [];
  if (!size || size <= 0) return [text];
  const chars = [...text];
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

function roughUsage(request: MockRequest, reply: MockReply): MockUsage {
  const out = (reply.content ?? '') + (reply.tool_calls ?? []).map((c) => c.name + c.arguments).join('');
  const prompt_tokens = Math.ceil(JSON.stringify(request.body?.messages ?? []).length / 4);
  const completion_tokens = Math.ceil(out.length / 4);
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}
