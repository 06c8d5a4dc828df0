// The OpenAI-compatible backend against a real local HTTP server speaking Chat Completions
// (test/helpers/mock-openai.ts): streaming, tool calls, retries, timeouts, aborts, and that the
// API key goes into the Authorization header and nowhere else.
import { createServer } from 'node:net';
import t, { type Test } from 'tap';
import { OpenAiCompatibleBackend, type OpenAiCompatibleOptions } from '../../../core/conversations/openai.js';
import type { BackendTool, ChatMessage, CompletionRequest } from '../../../core/conversations/backend.js';
import { isTyrumError, type TyrumError } from '../../../core/errors/index.js';
import { startMockOpenAi, type MockScriptEntry, type MockOpenAi } from '../../helpers/mock-openai.js';

const KEY = 'sk-test-0123456789abcdefSECRET';
const MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi' },
];
const TOOLS: BackendTool[] = [
  { name: 'get_weather', description: 'Weather for a city.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
];

async function mock(t: Test, script: MockScriptEntry[]): Promise<MockOpenAi> {
  const ai = await startMockOpenAi({ script });
  t.teardown(() => ai.close());
  return ai;
}

/** A backend on `ai` with the test key, no real waiting between attempts (the delays are recorded). */
function backend(ai: { url: string }, opts: Partial<OpenAiCompatibleOptions> = {}): { b: OpenAiCompatibleBackend; sleeps: number[] } {
  const sleeps: number[] = [];
  const b = new OpenAiCompatibleBackend({
    baseUrl: ai.url,
    model: 'test-model',
    apiKey: () => KEY,
    sleep: async (ms) => void sleeps.push(ms),
    ...opts,
  });
  return { b, sleeps };
}

function request(extra: Partial<CompletionRequest> = {}): CompletionRequest {
  return { messages: MESSAGES, tools: [], signal: new AbortController().signal, ...extra };
}

async function failure(p: Promise<unknown>): Promise<TyrumError> {
  try {
    await p;
  } catch (e) {
    if (isTyrumError(e)) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

function assertNoKey(t: Test, e: TyrumError): void {
  const all = JSON.stringify({ message: e.message, details: e.details, code: e.code, stack: e.stack, cause: String(e.cause) });
  t.notOk(all.includes(KEY), 'the key appears nowhere in the error');
  t.notOk(all.includes('SECRET'), 'not even part of it');
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

t.test('streamed text arrives through onDelta piece by piece, in order, and as the whole content', async (t) => {
  const ai = await mock(t, [{ content: 'Hello there, how can I help?', chunkSize: 4, model: 'served-model' }]);
  const { b } = backend(ai);
  const deltas: string[] = [];
  const c = await b.complete(request({ onDelta: (d) => deltas.push(d) }));
  t.equal(c.content, 'Hello there, how can I help?');
  t.ok(deltas.length > 1, 'more than one delta');
  t.equal(deltas.join(''), 'Hello there, how can I help?');
  t.same(deltas.slice(0, 2), ['Hell', 'o th']);
  t.same(c.tool_calls, []);
  t.equal(c.finish_reason, 'stop');
  t.equal(c.model, 'served-model');
  t.equal(c.attempts, 1);
  t.equal(b.kind, 'openai-compatible');
});

t.test('several tool calls are assembled by index from fragmented arguments', async (t) => {
  const ai = await mock(t, [
    {
      content: 'Checking.',
      chunkSize: 3,
      tool_calls: [
        { id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { id: 'call_b', name: 'get_weather', arguments: '{"city":"Zürich 🌧"}' },
      ],
    },
  ]);
  const { b } = backend(ai);
  const c = await b.complete(request({ tools: TOOLS }));
  t.equal(c.content, 'Checking.');
  t.same(c.tool_calls, [
    { id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' },
    { id: 'call_b', name: 'get_weather', arguments: '{"city":"Zürich 🌧"}' },
  ]);
  t.equal(c.finish_reason, 'tool_calls');
  t.equal(c.content, 'Checking.');
});

t.test('token usage from the final chunk is captured, and is null when the server reports none', async (t) => {
  const ai = await mock(t, [{ content: 'a', usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } }, { content: 'b', usage: null }]);
  const { b } = backend(ai);
  t.same((await b.complete(request())).usage, { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 });
  t.equal((await b.complete(request())).usage, null);
});

t.test('a plain JSON answer to a streaming request is accepted, its content passed to onDelta once', async (t) => {
  const ai = await mock(t, [
    { stream: false, content: 'Not streamed.', tool_calls: [{ id: 'x1', name: 'get_weather', arguments: '{"city":"Oslo"}' }], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } },
  ]);
  const { b } = backend(ai);
  const deltas: string[] = [];
  const c = await b.complete(request({ tools: TOOLS, onDelta: (d) => deltas.push(d) }));
  t.equal(c.content, 'Not streamed.');
  t.same(deltas, ['Not streamed.']);
  t.same(c.tool_calls, [{ id: 'x1', name: 'get_weather', arguments: '{"city":"Oslo"}' }]);
  t.same(c.usage, { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
  t.equal(c.finish_reason, 'tool_calls');
  t.equal(c.model, 'test-model');
});

t.test('a 429 with Retry-After is retried after the delay the server asked for', async (t) => {
  const ai = await mock(t, [{ status: 429, retryAfter: '2', errorMessage: 'slow down' }, { content: 'ok' }]);
  const { b, sleeps } = backend(ai);
  const c = await b.complete(request());
  t.equal(c.content, 'ok');
  t.equal(c.attempts, 2);
  t.same(sleeps, [2000]);
  t.equal(ai.requests.length, 2);
});

t.test('Retry-After as an HTTP date is honoured, and a long one is capped at 60 seconds', async (t) => {
  const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
  const ai = await mock(t, [{ status: 429, retryAfter: '3600' }, { status: 503, retryAfter: inAnHour }, { content: 'ok' }]);
  const { b, sleeps } = backend(ai);
  t.equal((await b.complete(request())).attempts, 3);
  t.same(sleeps, [60_000, 60_000]);
});

t.test('a 503 is retried with a jittered backoff no longer than the base delay', async (t) => {
  const ai = await mock(t, [{ status: 503, errorMessage: 'overloaded' }, { content: 'ok' }]);
  const { b, sleeps } = backend(ai, { retryBaseMs: 100 });
  const c = await b.complete(request());
  t.equal(c.content, 'ok');
  t.equal(c.attempts, 2);
  t.equal(sleeps.length, 1);
  t.ok(sleeps[0]! >= 0 && sleeps[0]! <= 100, `backoff ${sleeps[0]} within [0, 100]`);
});

t.test('a 500 that persists fails with TYRUM_ERR_BACKEND_HTTP once the retries run out', async (t) => {
  const ai = await mock(t, Array.from({ length: 4 }, () => ({ status: 500, errorMessage: 'boom inside' })));
  const { b, sleeps } = backend(ai, { retryBaseMs: 100 });
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_HTTP');
  t.same(e.details, { status: 500, attempts: 4 });
  t.match(e.message, /HTTP 500: boom inside/);
  t.equal(ai.requests.length, 4);
  t.equal(sleeps.length, 3);
  sleeps.forEach((ms, i) => t.ok(ms >= 0 && ms <= 100 * 2 ** i, `backoff ${i + 1} (${ms} ms) within its exponential bound`));
});

t.test('a 429 that persists fails with TYRUM_ERR_BACKEND_RATE_LIMITED', async (t) => {
  const ai = await mock(t, [{ status: 429, errorMessage: 'quota' }, { status: 429, errorMessage: 'quota' }]);
  const { b } = backend(ai, { maxRetries: 1 });
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_RATE_LIMITED');
  t.same(e.details, { status: 429, attempts: 2 });
});

t.test('a 401 fails at once with the server message and without the key, after one request', async (t) => {
  // Some servers echo the key they were given; the error must still not carry it.
  const ai = await mock(t, [(req) => ({ status: 401, errorMessage: `Incorrect API key provided: ${String(req.headers.authorization)}` })]);
  const { b, sleeps } = backend(ai);
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_HTTP');
  t.same(e.details, { status: 401, attempts: 1 });
  t.match(e.message, /401/);
  t.match(e.message, /Incorrect API key provided/);
  t.equal(ai.requests.length, 1);
  t.same(sleeps, []);
  assertNoKey(t, e);
});

t.test('the server error of a 4xx is taken from a non-JSON body too, cut to 300 characters', async (t) => {
  const ai = await mock(t, [{ status: 404, raw: `model not found ${'x'.repeat(1000)}`, contentType: 'text/plain' }]);
  const { b } = backend(ai);
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_HTTP');
  t.match(e.message, /HTTP 404: model not found x+…$/);
  t.ok(e.message.length < 400, 'the server text is truncated');
});

t.test('a refused connection fails with TYRUM_ERR_BACKEND_UNAVAILABLE after the retries', async (t) => {
  const port = await closedPort();
  const { b, sleeps } = backend({ url: `http://127.0.0.1:${port}/v1` }, { maxRetries: 2 });
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_UNAVAILABLE');
  t.same(e.details, { attempts: 3 });
  t.match(e.message, /ECONNREFUSED/);
  t.equal(sleeps.length, 2);
  assertNoKey(t, e);
});

t.test('a server that accepts but never answers times out after idleTimeoutMs', async (t) => {
  const ai = await mock(t, [{ hang: true }]);
  const { b } = backend(ai, { idleTimeoutMs: 200, maxRetries: 0 });
  const started = Date.now();
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_TIMEOUT');
  t.same(e.details, { attempts: 1 });
  t.ok(Date.now() - started < 10_000, 'well before any default timeout');
});

t.test('a stream that stalls after its first text times out and is not retried', async (t) => {
  const ai = await mock(t, [{ content: 'partial', hang: true }, { content: 'never asked for' }]);
  const { b } = backend(ai, { idleTimeoutMs: 200 });
  const deltas: string[] = [];
  const e = await failure(b.complete(request({ onDelta: (d) => deltas.push(d) })));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_TIMEOUT');
  t.same(deltas, ['partial']);
  t.equal(ai.requests.length, 1);
});

t.test('a stream that keeps trickling past timeoutMs times out even though it is never idle', async (t) => {
  const ai = await mock(t, [{ content: 'x'.repeat(100), chunkSize: 1, chunkDelayMs: 20 }]);
  const { b } = backend(ai, { timeoutMs: 300, idleTimeoutMs: 5000, maxRetries: 0 });
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_TIMEOUT');
  t.match(e.message, /within 300 ms/);
});

t.test('a connection cut after text streamed is TYRUM_ERR_BACKEND_UNAVAILABLE, without a retry that would repeat the text', async (t) => {
  const ai = await mock(t, [{ content: 'Hello', disconnect: true }, { content: 'Hello again' }]);
  const { b } = backend(ai);
  const deltas: string[] = [];
  const e = await failure(b.complete(request({ onDelta: (d) => deltas.push(d) })));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_UNAVAILABLE');
  t.same(deltas, ['Hello']);
  t.equal(ai.requests.length, 1);
});

t.test('a connection cut before any text is retried', async (t) => {
  const ai = await mock(t, [{ tool_calls: [{ name: 'get_weather', arguments: '{"ci' }], disconnect: true }, { content: 'fine' }]);
  const { b } = backend(ai);
  const c = await b.complete(request({ onDelta: () => undefined }));
  t.equal(c.content, 'fine');
  t.same(c.tool_calls, []);
  t.equal(c.attempts, 2);
});

t.test('aborting during the backoff stops at once with the abort reason', async (t) => {
  const ai = await mock(t, [{ status: 503, retryAfter: '30' }, { content: 'never asked for' }]);
  const ctl = new AbortController();
  const reason = new Error('turn cancelled');
  // The real sleep: a 30 s timer the abort must cut short.
  const b = new OpenAiCompatibleBackend({ baseUrl: ai.url, model: 'test-model' });
  const started = Date.now();
  const p = b.complete(request({ signal: ctl.signal }));
  while (ai.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
  setTimeout(() => ctl.abort(reason), 50);
  await t.rejects(p, reason);
  t.ok(Date.now() - started < 10_000, 'did not wait out the Retry-After');
  t.equal(ai.requests.length, 1);
});

t.test('aborting ends a wait even when an injected sleep ignores the signal', async (t) => {
  const ai = await mock(t, [{ status: 503 }, { content: 'never asked for' }]);
  const ctl = new AbortController();
  const reason = new Error('gateway stopping');
  const { b } = backend(ai, {
    sleep: () => {
      ctl.abort(reason);
      return new Promise<void>(() => undefined);
    },
  });
  await t.rejects(b.complete(request({ signal: ctl.signal })), reason);
  t.equal(ai.requests.length, 1);
});

t.test('aborting during a stream rejects with the abort reason, passes on no further text and makes no retry', async (t) => {
  const ai = await mock(t, [{ content: 'first words', chunkSize: 1, hang: true }, { content: 'never asked for' }]);
  const ctl = new AbortController();
  const reason = new Error('user pressed stop');
  const { b } = backend(ai);
  const deltas: string[] = [];
  const onDelta = (d: string): void => {
    deltas.push(d);
    ctl.abort(reason);
  };
  await t.rejects(b.complete(request({ signal: ctl.signal, onDelta })), reason);
  t.same(deltas, ['f']);
  t.equal(ai.requests.length, 1);
});

t.test('an already aborted signal sends nothing', async (t) => {
  const ai = await mock(t, []);
  const ctl = new AbortController();
  ctl.abort(new Error('too late'));
  const { b } = backend(ai);
  await t.rejects(b.complete(request({ signal: ctl.signal })), { message: 'too late' });
  t.equal(ai.requests.length, 0);
});

t.test('a stream event that is not JSON is TYRUM_ERR_BACKEND_PROTOCOL, not retried', async (t) => {
  const ai = await mock(t, [{ raw: 'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\ndata: {not json\n\n' }, { content: 'never asked for' }]);
  const { b } = backend(ai);
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_PROTOCOL');
  t.same(e.details, { attempts: 1 });
  t.equal(ai.requests.length, 1);
});

t.test('a JSON body that is not a completion is TYRUM_ERR_BACKEND_PROTOCOL', async (t) => {
  const ai = await mock(t, [{ stream: false, raw: '{"hello": "world"}' }, { stream: false, raw: '<html>' }]);
  const { b } = backend(ai);
  t.equal((await failure(b.complete(request()))).code, 'TYRUM_ERR_BACKEND_PROTOCOL');
  t.equal((await failure(b.complete(request()))).code, 'TYRUM_ERR_BACKEND_PROTOCOL');
});

const sse = (...events: unknown[]): string => events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join('');

t.test('a tool call without a function name is TYRUM_ERR_BACKEND_PROTOCOL', async (t) => {
  const raw = sse(
    { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'c1', function: { arguments: '{}' } }] } }] },
    { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    '[DONE]',
  );
  const ai = await mock(t, [{ raw }]);
  const { b } = backend(ai);
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_PROTOCOL');
  t.match(e.message, /no function name/);
});

t.test('tool calls the server sent without ids get generated call_<n> ids', async (t) => {
  const raw = sse(
    { model: 'llama', choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { name: 'a', arguments: '{"x":' } }] } }] },
    { choices: [{ index: 0, delta: { tool_calls: [{ index: 1, function: { name: 'b', arguments: '{}' } }] } }] },
    { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '1}' } }] } }] },
    { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    '[DONE]',
  );
  const ai = await mock(t, [{ raw }]);
  const { b } = backend(ai);
  const c = await b.complete(request());
  t.same(c.tool_calls, [
    { id: 'call_0', name: 'a', arguments: '{"x":1}' },
    { id: 'call_1', name: 'b', arguments: '{}' },
  ]);
  t.equal(c.model, 'llama');
  t.equal(c.content, null);
});

t.test('a response larger than maxResponseBytes is TYRUM_ERR_BACKEND_PROTOCOL', async (t) => {
  const ai = await mock(t, [{ content: 'y'.repeat(5000), chunkSize: 100 }]);
  const { b } = backend(ai, { maxResponseBytes: 1000 });
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_PROTOCOL');
  t.match(e.message, /exceeds 1000 bytes/);
});

t.test('an error event in the stream fails with the server message', async (t) => {
  const ai = await mock(t, [{ raw: sse({ error: { message: 'context length exceeded' } }) }]);
  const { b } = backend(ai);
  const e = await failure(b.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_BACKEND_HTTP');
  t.match(e.message, /context length exceeded/);
});

t.test('the event stream is parsed whatever its split: CRLF, CR, comments, other fields, no space after data:, multi-byte text', async (t) => {
  const body =
    ': keep-alive comment\r\n' +
    'event: message\r\n' +
    'data: {"model":"m1","choices":[{"index":0,"delta":{"role":"assistant","content":"Grüße "}}]}\r\n\r\n' +
    'data:{"choices":[{"index":0,"delta":{"content":"🌍!"}}]}\r\r' +
    'id: 7\n' +
    'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
    'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n' +
    'data: [DONE]\r\n\r\n';
  const bytes = new TextEncoder().encode(body);
  // One byte per read: every line, CRLF and UTF-8 sequence is split somewhere.
  const fetchOneByteAtATime: typeof fetch = async () => {
    let i = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (i < bytes.length) ctl.enqueue(bytes.slice(i, ++i));
        else ctl.close();
      },
    });
    return new Response(stream, { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8' } });
  };
  const b = new OpenAiCompatibleBackend({ baseUrl: 'http://127.0.0.1:1/v1', model: 'm', fetch: fetchOneByteAtATime });
  const deltas: string[] = [];
  const c = await b.complete(request({ onDelta: (d) => deltas.push(d) }));
  t.equal(c.content, 'Grüße 🌍!');
  t.same(deltas, ['Grüße ', '🌍!']);
  t.equal(c.finish_reason, 'stop');
  t.equal(c.model, 'm1');
  t.same(c.usage, { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
});

t.test('the request carries the key as a Bearer token, the model, the messages in wire shape, the tools and stream_options', async (t) => {
  const ai = await mock(t, [{ content: 'ok' }, { content: 'ok' }]);
  const { b } = backend(ai, { temperature: 0.2, maxTokens: 256 });
  const messages: ChatMessage[] = [
    ...MESSAGES,
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', name: 'get_weather', arguments: '{"city":"Rome"}' }] },
    { role: 'tool', tool_call_id: 'c1', content: '{"temp":21}' },
  ];
  await b.complete(request({ messages, tools: TOOLS }));
  const [r] = ai.requests;
  t.equal(r!.headers.authorization, `Bearer ${KEY}`);
  t.equal(r!.path, '/v1/chat/completions');
  t.same(r!.body, {
    model: 'test-model',
    messages: [
      ...MESSAGES,
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '{"temp":21}' },
    ],
    tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city.', parameters: TOOLS[0]!.parameters } }],
    tool_choice: 'auto',
    temperature: 0.2,
    max_tokens: 256,
    stream: true,
    stream_options: { include_usage: true },
  });

  const keyless = new OpenAiCompatibleBackend({ baseUrl: `${ai.url}/`, model: 'local' });
  await keyless.complete(request());
  const r2 = ai.requests[1]!;
  t.equal(r2.headers.authorization, undefined, 'no key, no Authorization header');
  t.notOk('tools' in r2.body, 'no tools, no tools field');
  t.notOk('tool_choice' in r2.body);
});

t.test('the key is read for every request, so a rotated key is used on the retry', async (t) => {
  const ai = await mock(t, [{ status: 502 }, { content: 'ok' }]);
  const keys = ['sk-old', 'sk-new'];
  const { b } = backend(ai, { apiKey: () => keys.shift() ?? null });
  await b.complete(request());
  t.same(
    ai.requests.map((r) => r.headers.authorization),
    ['Bearer sk-old', 'Bearer sk-new'],
  );
});

t.test('the key appears in no error message or details, whatever the failure', async (t) => {
  const ai = await mock(t, [
    (req) => ({ status: 400, errorMessage: `bad request from ${String(req.headers.authorization)}` }),
    ...Array.from({ length: 2 }, () => (req: { headers: { authorization?: string } }) => ({ status: 500, errorMessage: `oops ${req.headers.authorization}` })),
    { raw: `data: {${KEY}\n\n` },
    { hang: true },
    { hang: true },
  ]);
  const { b } = backend(ai, { maxRetries: 1, idleTimeoutMs: 200 });
  const errors: TyrumError[] = [];
  for (let i = 0; i < 4; i++) errors.push(await failure(b.complete(request())));
  t.same(
    errors.map((e) => e.code),
    ['TYRUM_ERR_BACKEND_HTTP', 'TYRUM_ERR_BACKEND_HTTP', 'TYRUM_ERR_BACKEND_PROTOCOL', 'TYRUM_ERR_BACKEND_TIMEOUT'],
  );
  for (const e of errors) assertNoKey(t, e);
});

t.test('a key that cannot be an HTTP header value is refused without quoting it; surrounding whitespace is trimmed', async (t) => {
  const ai = await mock(t, [{ content: 'ok' }]);
  const bad = new OpenAiCompatibleBackend({ baseUrl: ai.url, model: 'm', apiKey: () => 'sk-abc SECRET' });
  const e = await failure(bad.complete(request()));
  t.equal(e.code, 'TYRUM_ERR_INVALID_CONFIG');
  t.notOk(e.message.includes('SECRET'));
  t.equal(ai.requests.length, 0);
  const trimmed = new OpenAiCompatibleBackend({ baseUrl: ai.url, model: 'm', apiKey: () => `${KEY}\n` });
  await trimmed.complete(request());
  t.equal(ai.requests[0]!.headers.authorization, `Bearer ${KEY}`);
});

t.test('an under-scripted mock server answers 500 naming the exhausted script', async (t) => {
  const ai = await mock(t, []);
  const { b } = backend(ai, { maxRetries: 0 });
  const e = await failure(b.complete(request()));
  t.match(e.message, /script exhausted/);
});
