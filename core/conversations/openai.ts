/**
 * An execution backend for any server speaking the OpenAI Chat Completions API
 * (`POST <baseUrl>/chat/completions`): OpenAI itself, Ollama, vLLM, llama.cpp server, LM Studio.
 *
 * It always streams, so text reaches the user as it is produced and a stalled server is caught by
 * the idle timeout rather than only by the overall one; a plain JSON answer is accepted too, since
 * some local servers ignore `stream: true`. Dependency-free: fetch, a small SSE parser, retries.
 *
 * Retries (429, 500/502/503/504, network errors, timeouts) happen only while nothing has been
 * passed to `onDelta` in the attempt: retrying after text was shown would show it twice.
 * The API key is read for every request (so a rotated key takes effect) and goes only into the
 * Authorization header; every error message is scrubbed of it, because some servers echo it back.
 */
import { TyrumError, type ErrorCode } from '../errors/index.js';
import { raceAbort } from '../util/abort.js';
import type { BackendToolCall, ChatMessage, Completion, CompletionRequest, ExecutionBackend, TokenUsage } from './backend.js';

export interface OpenAiCompatibleOptions {
  /** e.g. `https://api.openai.com/v1`, or `http://127.0.0.1:11434/v1` for Ollama; `/chat/completions` is appended. */
  baseUrl: string;
  model: string;
  /** Called for every HTTP request; null or empty sends no Authorization header (local servers need none). */
  apiKey?: () => string | null;
  /** Budget of one whole attempt, response body included. Default 120 s. */
  timeoutMs?: number;
  /** Longest silence (no response bytes, headers included) before the attempt times out. Default 60 s. */
  idleTimeoutMs?: number;
  /** Retries after the first attempt. Default 3. */
  maxRetries?: number;
  /** Base of the exponential backoff (full jitter, capped at 30 s). Default 500 ms. */
  retryBaseMs?: number;
  /** Largest response body accepted. Default 8 MiB. */
  maxResponseBytes?: number;
  temperature?: number;
  /** Sent as `max_tokens`, which local servers understand (unlike `max_completion_tokens`). */
  maxTokens?: number;
  fetch?: typeof fetch;
  /** Waits between attempts; tests inject one. Aborting `signal` ends the wait regardless. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
const MAX_BACKOFF_MS = 30_000;
const MAX_RETRY_AFTER_MS = 60_000;
/** Error bodies are read only this far: their message is all we want from them. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_SERVER_MESSAGE_CHARS = 300;

/** Why one attempt failed and whether another may be made; turned into a TyrumError at the end. */
class AttemptFailure extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

function protocolError(message: string): AttemptFailure {
  return new AttemptFailure('TYRUM_ERR_BACKEND_PROTOCOL', `model backend answer is not a Chat Completions response: ${message}`, false);
}

export class OpenAiCompatibleBackend implements ExecutionBackend {
  readonly kind = 'openai-compatible';
  private readonly url: string;
  private readonly origin: string;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseMs: number;
  private readonly maxResponseBytes: number;
  private readonly fetchFn: typeof fetch;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  constructor(private readonly opts: OpenAiCompatibleOptions) {
    let parsed: URL;
    try {
      parsed = new URL(opts.baseUrl);
    } catch {
      throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `model backend base URL is not a URL: ${opts.baseUrl.slice(0, 200)}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `model backend base URL must be http(s), not ${parsed.protocol}`);
    }
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    this.origin = parsed.origin;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.maxRetries = opts.maxRetries ?? 3;
    this.retryBaseMs = opts.retryBaseMs ?? 500;
    this.maxResponseBytes = opts.maxResponseBytes ?? 8 * 1024 * 1024;
    this.fetchFn = opts.fetch ?? ((input, init) => fetch(input, init));
    this.sleep = opts.sleep ?? sleepFor;
  }

  async complete(req: CompletionRequest): Promise<Completion> {
    const { signal } = req;
    const body = JSON.stringify(this.requestBody(req));
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) throw signal.reason;
      const key = this.readKey();
      try {
        return { ...(await this.attempt(body, key, req)), attempts: attempt };
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        if (!(e instanceof AttemptFailure)) throw e;
        if (!e.retryable || attempt > this.maxRetries) {
          const message = attempt > 1 ? `${e.message} (after ${attempt} attempts)` : e.message;
          throw new TyrumError(e.code, redact(message, key), { ...(e.status !== undefined ? { status: e.status } : {}), attempts: attempt });
        }
        await raceAbort(this.sleep(e.retryAfterMs ?? this.backoff(attempt), signal), signal);
      }
    }
  }

  private requestBody(req: CompletionRequest): Record<string, unknown> {
    const { temperature, maxTokens } = this.opts;
    return {
      model: this.opts.model,
      messages: req.messages.map(toWireMessage),
      ...(req.tools.length > 0
        ? {
            tools: req.tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } })),
            tool_choice: 'auto',
          }
        : {}),
      ...(temperature !== undefined ? { temperature } : {}),
      ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
      stream: true,
      stream_options: { include_usage: true },
    };
  }

  /** The key, trimmed (a pasted key often ends in a newline); refused if it cannot be a header value. */
  private readKey(): string | null {
    const key = this.opts.apiKey?.()?.trim() || null;
    if (key !== null && !/^[\x21-\x7e]+$/.test(key)) {
      // fetch would reject it with a message quoting the header value, i.e. the key.
      throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', 'the model backend API key contains characters not allowed in an HTTP header (spaces or non-ASCII)');
    }
    return key;
  }

  /** Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(attempt-1))]. */
  private backoff(attempt: number): number {
    return Math.round(Math.random() * Math.min(MAX_BACKOFF_MS, this.retryBaseMs * 2 ** (attempt - 1)));
  }

  private async attempt(body: string, key: string | null, req: CompletionRequest): Promise<Omit<Completion, 'attempts'>> {
    const ctl = new AbortController();
    let timedOut: string | null = null;
    const expire = (why: string) => (): void => {
      timedOut = why;
      ctl.abort();
    };
    const total = setTimeout(expire(`did not finish within ${this.timeoutMs} ms`), this.timeoutMs);
    const idleWhy = `sent nothing for ${this.idleTimeoutMs} ms`;
    let idle = setTimeout(expire(idleWhy), this.idleTimeoutMs);
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(expire(idleWhy), this.idleTimeoutMs);
    };
    const onAbort = (): void => ctl.abort(req.signal.reason);
    req.signal.addEventListener('abort', onAbort, { once: true });
    const progress = { streamed: false };
    /** An error from fetch or a body read, as this attempt's failure (an abort stays itself). */
    const classify = (e: unknown): unknown => {
      if (req.signal.aborted) return req.signal.reason;
      if (timedOut !== null) return new AttemptFailure('TYRUM_ERR_BACKEND_TIMEOUT', `model backend at ${this.origin} ${timedOut}`, !progress.streamed);
      return new AttemptFailure('TYRUM_ERR_BACKEND_UNAVAILABLE', `model backend at ${this.origin} unreachable: ${networkReason(e)}`, !progress.streamed);
    };
    /** `p` raced against this attempt's end; `p` failing later (it was aborted too) is not left unhandled. */
    const race = <T>(p: Promise<T>): Promise<T> => {
      p.catch(() => undefined);
      return raceAbort(p, ctl.signal).catch((e: unknown) => {
        throw classify(e);
      });
    };
    const { onDelta } = req;
    /** No text is passed on once the attempt was aborted or timed out, even from the chunk in hand. */
    const deliver =
      onDelta &&
      ((text: string): void => {
        if (ctl.signal.aborted) throw classify(ctl.signal.reason);
        onDelta(text);
      });
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream, application/json' };
      if (key !== null) headers.authorization = `Bearer ${key}`;
      // Redirects are not followed: one could carry the Authorization header to another host.
      const res = await race(this.fetchFn(this.url, { method: 'POST', headers, body, signal: ctl.signal, redirect: 'manual' }));
      touch();
      const bodyReader = res.body?.getReader();
      reader = bodyReader;
      let received = 0;
      /** The next piece of the body, or null at its end; resets the idle timer, enforces `limit`. */
      const next = async (limit: number): Promise<Uint8Array | null> => {
        if (bodyReader === undefined) return null;
        const r = await race(bodyReader.read());
        if (r.done) return null;
        touch();
        received += r.value.byteLength;
        if (received > limit) throw protocolError(`the response exceeds ${limit} bytes`);
        return r.value;
      };

      if (!res.ok) throw await httpFailure(res, next);
      const type = (res.headers.get('content-type') ?? '').toLowerCase();
      if (type.includes('application/json')) {
        return jsonCompletion(await readText(next, this.maxResponseBytes), deliver, progress);
      }
      if (!type.includes('text/event-stream')) throw protocolError(`unexpected content-type "${type.slice(0, 100)}"`);
      return await streamCompletion(() => next(this.maxResponseBytes), deliver, progress);
    } finally {
      clearTimeout(total);
      clearTimeout(idle);
      req.signal.removeEventListener('abort', onAbort);
      reader?.cancel().catch(() => undefined);
    }
  }
}

/** Chat Completions' own shape of a message (tool calls nest their name and arguments under `function`). */
function toWireMessage(m: ChatMessage): Record<string, unknown> {
  if (m.role !== 'assistant' || !m.tool_calls?.length) return { ...m };
  return {
    role: 'assistant',
    content: m.content,
    tool_calls: m.tool_calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })),
  };
}

type NextChunk = (limit: number) => Promise<Uint8Array | null>;

/** The body as text, at most `limit` bytes (past it: a protocol error). */
async function readText(next: NextChunk, limit: number): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  for (let chunk = await next(limit); chunk !== null; chunk = await next(limit)) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

async function httpFailure(res: Response, next: NextChunk): Promise<AttemptFailure> {
  const { status } = res;
  const decoder = new TextDecoder();
  let text = '';
  let bytes = 0;
  try {
    for (let chunk = await next(Infinity); chunk !== null; chunk = bytes < MAX_ERROR_BODY_BYTES ? await next(Infinity) : null) {
      bytes += chunk.byteLength;
      text += decoder.decode(chunk, { stream: true });
    }
  } catch (e) {
    // A body cut off still leaves the status to report; a timeout or an abort does not.
    if (!(e instanceof AttemptFailure) || e.code === 'TYRUM_ERR_BACKEND_TIMEOUT') throw e;
  }
  const detail = serverMessage(text);
  const retryable = RETRY_STATUSES.has(status);
  return new AttemptFailure(
    status === 429 ? 'TYRUM_ERR_BACKEND_RATE_LIMITED' : 'TYRUM_ERR_BACKEND_HTTP',
    `model backend answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
    retryable,
    status,
    retryable ? retryAfterMs(res.headers.get('retry-after')) : undefined,
  );
}

/** The server's own words from an error body: `{error:{message}}`, `{error:"..."}` (Ollama), or the text itself. */
function serverMessage(text: string): string {
  let message = text.trim();
  try {
    const body: unknown = JSON.parse(text);
    if (isRecord(body)) message = errorText(body.error ?? body.message ?? body) ?? message;
  } catch {
    // Not JSON: the text is the message.
  }
  return message.length > MAX_SERVER_MESSAGE_CHARS ? `${message.slice(0, MAX_SERVER_MESSAGE_CHARS)}…` : message;
}

function errorText(e: unknown): string | null {
  if (typeof e === 'string') return e;
  if (isRecord(e) && typeof e.message === 'string') return e.message;
  return null;
}

/** `Retry-After` in seconds or as an HTTP date, capped; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  const ms = /^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isNaN(ms) ? undefined : Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.round(ms)));
}

/** fetch says only "fetch failed"; the cause says why (ECONNREFUSED, ECONNRESET, ENOTFOUND...). */
function networkReason(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause: unknown = e.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${e.message} (${typeof code === 'string' && !cause.message.includes(code) ? `${code}: ` : ''}${cause.message})`;
  }
  return e.message;
}

function redact(text: string, key: string | null): string {
  return key === null ? text : text.split(key).join('[redacted]');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function usageOf(u: Record<string, unknown>): TokenUsage | null {
  const prompt = u.prompt_tokens;
  const completion = u.completion_tokens;
  if (typeof prompt !== 'number' || typeof completion !== 'number') return null;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: typeof u.total_tokens === 'number' ? u.total_tokens : prompt + completion };
}

/** A tool call as it is assembled: streamed ones arrive in pieces keyed by `index`. */
interface PartialCall {
  index: number;
  id: string;
  name: string;
  arguments: string;
}

/** Arguments are a JSON string by the spec; some servers send the object itself. */
function argumentsText(a: unknown): string {
  if (a === undefined || a === null) return '';
  return typeof a === 'string' ? a : JSON.stringify(a);
}

function finishCalls(calls: Iterable<PartialCall>): BackendToolCall[] {
  return [...calls]
    .sort((a, b) => a.index - b.index)
    .map((c, n) => {
      if (!c.name) throw protocolError(`tool call ${n} has no function name`);
      return { id: c.id || `call_${n}`, name: c.name, arguments: c.arguments };
    });
}

interface Progress {
  streamed: boolean;
}

/** A whole `chat.completion` object (the non-streaming answer). */
function jsonCompletion(text: string, onDelta: ((t: string) => void) | undefined, progress: Progress): Omit<Completion, 'attempts'> {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw protocolError('the body is not valid JSON');
  }
  if (!isRecord(body)) throw protocolError('the body is not a JSON object');
  if (body.error !== undefined) throw reportedError(body.error);
  const choice: unknown = Array.isArray(body.choices) ? body.choices[0] : undefined;
  if (!isRecord(choice) || !isRecord(choice.message)) throw protocolError('no choices[0].message');
  const { message } = choice;
  const content = typeof message.content === 'string' && message.content !== '' ? message.content : null;
  const rawCalls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  const calls = rawCalls.map((c: unknown, index): PartialCall => {
    if (!isRecord(c)) throw protocolError('a tool call is not an object');
    const fn = isRecord(c.function) ? c.function : {};
    return { index, id: typeof c.id === 'string' ? c.id : '', name: typeof fn.name === 'string' ? fn.name : '', arguments: argumentsText(fn.arguments) };
  });
  const result = {
    content,
    tool_calls: finishCalls(calls),
    finish_reason: typeof choice.finish_reason === 'string' ? choice.finish_reason : null,
    usage: isRecord(body.usage) ? usageOf(body.usage) : null,
    model: typeof body.model === 'string' ? body.model : null,
  };
  if (content !== null && onDelta) {
    progress.streamed = true;
    onDelta(content);
  }
  return result;
}

/** An error object the server put in a 200 answer or mid-stream (vLLM does). */
function reportedError(e: unknown): AttemptFailure {
  const text = (errorText(e) ?? JSON.stringify(e)).slice(0, MAX_SERVER_MESSAGE_CHARS);
  return new AttemptFailure('TYRUM_ERR_BACKEND_HTTP', `model backend reported an error: ${text}`, false);
}

/** Reads an SSE stream of `chat.completion.chunk`s up to `data: [DONE]`. */
async function streamCompletion(next: () => Promise<Uint8Array | null>, onDelta: ((t: string) => void) | undefined, progress: Progress): Promise<Omit<Completion, 'attempts'>> {
  let content = '';
  const calls = new Map<number, PartialCall>();
  let finishReason: string | null = null;
  let usage: TokenUsage | null = null;
  let model: string | null = null;
  let sawChoice = false;
  let done = false;

  const onChunk = (data: string): void => {
    if (done) return;
    if (data.trim() === '[DONE]') {
      done = true;
      return;
    }
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      throw protocolError(`a stream event is not JSON: ${data.slice(0, 80)}`);
    }
    if (!isRecord(chunk)) throw protocolError('a stream event is not a JSON object');
    if (chunk.error !== undefined) throw reportedError(chunk.error);
    if (typeof chunk.model === 'string' && chunk.model !== '') model = chunk.model;
    if (isRecord(chunk.usage)) usage = usageOf(chunk.usage);
    if (!Array.isArray(chunk.choices)) {
      if (chunk.usage === undefined) throw protocolError('a stream event has neither choices nor usage');
      return;
    }
    const choices: unknown[] = chunk.choices;
    const choice = choices.find((c) => isRecord(c) && c.index === 0) ?? choices[0];
    if (choice === undefined) return; // the usage-only chunk
    if (!isRecord(choice)) throw protocolError('a choice is not an object');
    sawChoice = true;
    if (typeof choice.finish_reason === 'string') finishReason = choice.finish_reason;
    const delta = choice.delta;
    if (!isRecord(delta)) return;
    if (typeof delta.content === 'string' && delta.content !== '') {
      content += delta.content;
      if (onDelta) {
        progress.streamed = true;
        onDelta(delta.content);
      }
    }
    if (delta.tool_calls === undefined || delta.tool_calls === null) return;
    if (!Array.isArray(delta.tool_calls)) throw protocolError('delta.tool_calls is not an array');
    delta.tool_calls.forEach((tc: unknown, position) => {
      if (!isRecord(tc)) throw protocolError('a tool call delta is not an object');
      const index = typeof tc.index === 'number' ? tc.index : position;
      let call = calls.get(index);
      if (call === undefined) {
        call = { index, id: '', name: '', arguments: '' };
        calls.set(index, call);
      }
      if (typeof tc.id === 'string' && call.id === '') call.id = tc.id;
      const fn = isRecord(tc.function) ? tc.function : {};
      if (typeof fn.name === 'string' && call.name === '') call.name = fn.name;
      call.arguments += argumentsText(fn.arguments);
    });
  };

  const parser = new SseParser(onChunk);
  const decoder = new TextDecoder();
  while (!done) {
    const bytes = await next();
    if (bytes === null) {
      parser.push(decoder.decode());
      parser.end();
      break;
    }
    parser.push(decoder.decode(bytes, { stream: true }));
  }
  // Some servers close without [DONE]; a finish_reason shows the answer is nonetheless whole.
  if (!done && finishReason === null) {
    throw new AttemptFailure('TYRUM_ERR_BACKEND_UNAVAILABLE', 'model backend closed the stream before the answer was complete', !progress.streamed);
  }
  if (!sawChoice) throw protocolError('the stream carried no choices');
  return { content: content === '' ? null : content, tool_calls: finishCalls(calls.values()), finish_reason: finishReason, usage, model };
}

/**
 * The part of the server-sent-events format completions use: `data:` lines (joined by "\n" within
 * one event), events ended by a blank line, comments (`:`) and other fields ignored, lines ended by
 * LF, CRLF or CR; text may be split anywhere between pushes, a CRLF included.
 */
class SseParser {
  private buffer = '';
  /** How much of `buffer` is known to hold no line end (a long line arriving in pieces is scanned once). */
  private scanned = 0;
  private data: string[] = [];

  constructor(private readonly onEvent: (data: string) => void) {}

  push(text: string): void {
    this.buffer += text;
    let start = 0;
    let i = this.scanned;
    for (; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r' && i + 1 === this.buffer.length) break; // maybe the CR of a CRLF split across pushes
      this.line(this.buffer.slice(start, i));
      if (c === '\r' && this.buffer[i + 1] === '\n') i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    this.scanned = i - start;
  }

  /** The stream ended: a last line without its terminator, and a last event without its blank line, still count. */
  end(): void {
    if (this.buffer !== '') this.line(this.buffer.replace(/\r$/, ''));
    this.buffer = '';
    this.line('');
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) {
        const data = this.data.join('\n');
        this.data = [];
        this.onEvent(data);
      }
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    if ((colon < 0 ? line : line.slice(0, colon)) !== 'data') return;
    const value = colon < 0 ? '' : line.slice(colon + 1);
    this.data.push(value.startsWith(' ') ? value.slice(1) : value);
  }
}

/** A timer that an abort of `signal` ends at once (rejecting with its reason). */
function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
